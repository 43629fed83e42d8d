/* What cuecast's elements share: the worker pool that splits a frame's rows, the choice of pixel kernels,
 * and the statistics every element reports (frames, last and mean wall time per frame). An element embeds
 * a CcCommon, numbers its own properties from CC_PROP_LAST, and hands the common ones to these functions. */
#pragma once

#include <gst/gst.h>

#include "kernels.h"
#include "workers.h"

G_BEGIN_DECLS

enum
{
  CC_PROP_0,
  CC_PROP_N_THREADS,
  CC_PROP_KERNEL,
  CC_PROP_FRAMES,
  CC_PROP_LAST_US,
  CC_PROP_MEAN_US,
  CC_PROP_LAST,                 /* an element's own properties start here */
};

typedef struct
{
  /* under the object lock */
  guint n_threads;
  CcKernel kernel;              /* asked for; cc_kernel_resolve gives what runs */
  guint64 frames, total_us, last_us;
  /* the streaming thread's only */
  CcWorkers *workers;
} CcCommon;

/* Install n-threads, kernel, frames, last-us and mean-us; `what` names a frame's work ("remap"). */
void cc_common_install (GObjectClass * klass, const char *what);
/* TRUE when prop_id was one of the common properties (and was set or read). */
gboolean cc_common_set_property (GstObject * obj, CcCommon * c, guint prop_id, const GValue * value);
gboolean cc_common_get_property (GstObject * obj, CcCommon * c, guint prop_id, GValue * value);
/* The kernels this frame runs (read once per frame, so a change applies from the next frame). */
CcKernel cc_common_kernel (GstObject * obj, CcCommon * c);
/* Run job(ctx, k, parts) over the pool (made on first use, from the streaming thread, so its threads
 * inherit that thread's priority) and count the frame and its wall time. */
void cc_common_run (GstObject * obj, CcCommon * c, CcJob job, void *ctx);
/* Count a frame done without the pool (and its wall time since t0, from g_get_monotonic_time). */
void cc_common_count (GstObject * obj, CcCommon * c, gint64 t0);
/* Stop and finalize: end the pool's threads. */
void cc_common_stop (CcCommon * c);

G_END_DECLS
