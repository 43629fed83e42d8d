/* The elements' common GObject parts (see element.h). */
#include "element.h"

void
cc_common_install (GObjectClass * klass, const char *what)
{
  g_object_class_install_property (klass, CC_PROP_N_THREADS,
      g_param_spec_uint ("n-threads", "Threads", "Threads sharing a frame (0: one per CPU, at most 4)",
          0, 8, 0, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (klass, CC_PROP_KERNEL,
      g_param_spec_string ("kernel", "Kernel",
          "Pixel kernels: auto (the best this CPU runs), avx2 or plain-c; reads back what runs", "auto",
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (klass, CC_PROP_FRAMES,
      g_param_spec_uint64 ("frames", "Frames", "Frames processed", 0, G_MAXUINT64, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  gchar *blurb = g_strdup_printf ("Wall time of the last frame's %s (us)", what);
  g_object_class_install_property (klass, CC_PROP_LAST_US,
      g_param_spec_uint64 ("last-us", "Last time", g_intern_string (blurb), 0, G_MAXUINT64, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_free (blurb);
  blurb = g_strdup_printf ("Mean wall time of a frame's %s (us)", what);
  g_object_class_install_property (klass, CC_PROP_MEAN_US,
      g_param_spec_double ("mean-us", "Mean time", g_intern_string (blurb), 0, G_MAXDOUBLE, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_free (blurb);
}

gboolean
cc_common_set_property (GstObject * obj, CcCommon * c, guint prop_id, const GValue * value)
{
  switch (prop_id) {
    case CC_PROP_N_THREADS:
      GST_OBJECT_LOCK (obj);
      c->n_threads = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (obj);
      return TRUE;
    case CC_PROP_KERNEL:{
      const int k = cc_kernel_parse (g_value_get_string (value));
      if (k < 0) {
        GST_ELEMENT_WARNING (obj, LIBRARY, SETTINGS, ("kernel rejected"),
            ("unknown kernel '%s': use auto, avx2 or plain-c", g_value_get_string (value)));
        return TRUE;
      }
      GST_OBJECT_LOCK (obj);
      c->kernel = (CcKernel) k;
      GST_OBJECT_UNLOCK (obj);
      return TRUE;
    }
    default:
      return FALSE;
  }
}

gboolean
cc_common_get_property (GstObject * obj, CcCommon * c, guint prop_id, GValue * value)
{
  GST_OBJECT_LOCK (obj);
  switch (prop_id) {
    case CC_PROP_N_THREADS:
      g_value_set_uint (value, c->n_threads);
      break;
    case CC_PROP_KERNEL:
      g_value_set_string (value, cc_kernel_name (cc_kernel_resolve (c->kernel)));
      break;
    case CC_PROP_FRAMES:
      g_value_set_uint64 (value, c->frames);
      break;
    case CC_PROP_LAST_US:
      g_value_set_uint64 (value, c->last_us);
      break;
    case CC_PROP_MEAN_US:
      g_value_set_double (value, c->frames ? (double) c->total_us / c->frames : 0.0);
      break;
    default:
      GST_OBJECT_UNLOCK (obj);
      return FALSE;
  }
  GST_OBJECT_UNLOCK (obj);
  return TRUE;
}

CcKernel
cc_common_kernel (GstObject * obj, CcCommon * c)
{
  GST_OBJECT_LOCK (obj);
  const CcKernel k = c->kernel;
  GST_OBJECT_UNLOCK (obj);
  return cc_kernel_resolve (k);
}

void
cc_common_count (GstObject * obj, CcCommon * c, gint64 t0)
{
  const guint64 took = (guint64) (g_get_monotonic_time () - t0);
  GST_OBJECT_LOCK (obj);
  c->frames++;
  c->last_us = took;
  c->total_us += took;
  GST_OBJECT_UNLOCK (obj);
}

void
cc_common_run (GstObject * obj, CcCommon * c, CcJob job, void *ctx)
{
  const gint64 t0 = g_get_monotonic_time ();
  if (c->workers == NULL) {
    GST_OBJECT_LOCK (obj);
    const guint n = c->n_threads;
    GST_OBJECT_UNLOCK (obj);
    c->workers = cc_workers_new ((int) n);
  }
  cc_workers_run (c->workers, job, ctx);
  cc_common_count (obj, c, t0);
}

void
cc_common_stop (CcCommon * c)
{
  cc_workers_free (c->workers);
  c->workers = NULL;
}
