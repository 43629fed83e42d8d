/* A small fixed pool of worker threads that split one frame's rows between them (the calling streaming
 * thread takes part 0). Threads are created by the first call, from the streaming thread, so they inherit
 * its scheduling priority (niceness or SCHED_RR) like any thread it starts. */
#pragma once

typedef void (*CcJob) (void *ctx, int part, int parts);
typedef struct CcWorkers CcWorkers;

/* `parts` in all, including the caller; 0 picks one per online CPU (at most 4). */
CcWorkers *cc_workers_new (int parts);
/* Run job(ctx, k, parts) for every k, in parallel; returns when all are done. */
void cc_workers_run (CcWorkers * w, CcJob job, void *ctx);
void cc_workers_free (CcWorkers * w);
