/* Worker pool for splitting a frame's rows (see workers.h). */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_PARTS 8

struct CcWorkers
{
  int parts;
  int started;
  pthread_t threads[MAX_PARTS];
  pthread_mutex_t lock;
  pthread_cond_t go, done;
  unsigned long generation;
  int pending;
  int quit;
  CcJob job;
  void *ctx;
};

typedef struct
{
  CcWorkers *w;
  int part;
} Slot;


static void *
worker_main (void *arg)
{
  Slot *slot = arg;
  CcWorkers *w = slot->w;
  const int part = slot->part;
  unsigned long seen = 0;
  free (slot);
  pthread_mutex_lock (&w->lock);
  for (;;) {
    while (!w->quit && w->generation == seen)
      pthread_cond_wait (&w->go, &w->lock);
    if (w->quit)
      break;
    seen = w->generation;
    CcJob job = w->job;
    void *ctx = w->ctx;
    pthread_mutex_unlock (&w->lock);
    job (ctx, part, w->parts);
    pthread_mutex_lock (&w->lock);
    if (--w->pending == 0)
      pthread_cond_signal (&w->done);
  }
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

CcWorkers *
cc_workers_new (int parts)
{
  if (parts <= 0) {
    long n = sysconf (_SC_NPROCESSORS_ONLN);
    parts = n < 1 ? 1 : (n > 4 ? 4 : (int) n);
  }
  if (parts > MAX_PARTS)
    parts = MAX_PARTS;
  CcWorkers *w = calloc (1, sizeof *w);
  if (w == NULL)
    return NULL;
  w->parts = parts;
  pthread_mutex_init (&w->lock, NULL);
  pthread_cond_init (&w->go, NULL);
  pthread_cond_init (&w->done, NULL);
  return w;
}

static void
start_threads (CcWorkers * w)
{
  for (int k = 1; k < w->parts; k++) {
    Slot *slot = malloc (sizeof *slot);
    if (slot == NULL)
      break;
    slot->w = w;
    slot->part = k;
    if (pthread_create (&w->threads[k], NULL, worker_main, slot) != 0) {
      free (slot);
      break;
    }
    w->started = k;
  }
  if (w->started + 1 < w->parts)
    w->parts = w->started + 1; /* fewer threads than asked: the caller does the rest */
}

void
cc_workers_run (CcWorkers * w, CcJob job, void *ctx)
{
  if (w == NULL || w->parts == 1) {
    job (ctx, 0, 1);
    return;
  }
  if (w->started == 0)
    start_threads (w);
  if (w->parts == 1) {
    job (ctx, 0, 1);
    return;
  }
  pthread_mutex_lock (&w->lock);
  w->job = job;
  w->ctx = ctx;
  w->pending = w->parts - 1;
  w->generation++;
  pthread_cond_broadcast (&w->go);
  pthread_mutex_unlock (&w->lock);
  job (ctx, 0, w->parts);
  pthread_mutex_lock (&w->lock);
  while (w->pending > 0)
    pthread_cond_wait (&w->done, &w->lock);
  pthread_mutex_unlock (&w->lock);
}

void
cc_workers_free (CcWorkers * w)
{
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->lock);
  w->quit = 1;
  pthread_cond_broadcast (&w->go);
  pthread_mutex_unlock (&w->lock);
  for (int k = 1; k <= w->started; k++)
    pthread_join (w->threads[k], NULL);
  pthread_mutex_destroy (&w->lock);
  pthread_cond_destroy (&w->go);
  pthread_cond_destroy (&w->done);
  free (w);
}
