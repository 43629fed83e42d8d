/* Worker pool for splitting a frame's rows (see workers.h).
 *
 * A frame is cut into CHUNKS_PER_THREAD chunks per thread, handed out one at a time: the caller works
 * through them itself and the workers take what they can. A worker that wakes late (its core busy with the
 * decoder or another process) costs the frame only the chunk it holds, not half the frame, as a static
 * split did: the static split's wait for the slower half was most of the correction's p99. Chunks are
 * claimed under the lock with the frame's generation, so a worker that wakes after the frame is done
 * claims nothing and never touches a finished frame's context. */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_PARTS 8
#define CHUNKS_PER_THREAD 16

struct CcWorkers
{
  int parts;                    /* threads, the caller included */
  int started;
  pthread_t threads[MAX_PARTS];
  pthread_mutex_t lock;
  pthread_cond_t go, done;
  unsigned long generation;     /* one per frame */
  int chunks, next, finished;   /* this frame's chunks: in all, the next to hand out, done */
  int quit;
  CcJob job;
  void *ctx;
};

/* Take chunks of frame `gen` until none is left; called and returns with the lock held. */
static void
work (CcWorkers * w, unsigned long gen)
{
  while (w->generation == gen && w->next < w->chunks) {
    const int chunk = w->next++, chunks = w->chunks;
    CcJob job = w->job;
    void *ctx = w->ctx;
    pthread_mutex_unlock (&w->lock);
    job (ctx, chunk, chunks);
    pthread_mutex_lock (&w->lock);
    if (++w->finished == w->chunks)
      pthread_cond_signal (&w->done);
  }
}

static void *
worker_main (void *arg)
{
  CcWorkers *w = arg;
  unsigned long seen = 0;
  pthread_mutex_lock (&w->lock);
  for (;;) {
    while (!w->quit && w->generation == seen)
      pthread_cond_wait (&w->go, &w->lock);
    if (w->quit)
      break;
    seen = w->generation;
    work (w, seen);
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
    if (pthread_create (&w->threads[k], NULL, worker_main, w) != 0)
      break;
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
  w->chunks = w->parts * CHUNKS_PER_THREAD;
  w->next = 0;
  w->finished = 0;
  const unsigned long gen = ++w->generation;
  pthread_cond_broadcast (&w->go);
  work (w, gen);
  while (w->finished < w->chunks)
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
