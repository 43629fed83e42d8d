/* cuecastremap: I420 in, I420 out, every output pixel sampled (bilinear) where a remap table says.
 *
 * The table comes from Python as the `map` property (layout in remap.h): the fisheye correction, or the
 * correction composed with a table homography for the top-down view; this element knows no lens model.
 * Luma and chroma have their own tables (chroma at half resolution, border 128 so the edge is black, not
 * green); an optional 256-entry `luma-lut` (brightness/contrast) is applied in the same pass. Rows are
 * split over a few threads. `enabled=false` passes frames through untouched. The output is bit-exact with
 * cv2.remap(INTER_LINEAR, BORDER_CONSTANT) on the same fixed-point maps (tests/integration/test_native.py). */
#include "remap.h"

#include <string.h>

#include "element.h"

GST_DEBUG_CATEGORY_STATIC (cuecast_remap_debug);
#define GST_CAT_DEFAULT cuecast_remap_debug

#define CHROMA_BORDER 128
#define LUMA_BORDER 0

struct _GstCuecastRemap
{
  GstVideoFilter parent;

  GMutex lock;                  /* guards map, header, lut, enabled */
  GBytes *map;
  CcMapHeader hdr;
  guint8 lut[256];
  gboolean lut_on;
  gboolean enabled;

  CcCommon common;              /* threads, kernels, statistics (element.h) */
};

enum
{
  PROP_MAP = CC_PROP_LAST,
  PROP_LUMA_LUT,
  PROP_ENABLED,
};

#define CAPS GST_VIDEO_CAPS_MAKE ("I420")

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (CAPS));

G_DEFINE_TYPE (GstCuecastRemap, gst_cuecast_remap, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE (cuecastremap, "cuecastremap", GST_RANK_NONE, GST_TYPE_CUECAST_REMAP);

/* -- the map ----------------------------------------------------------------------------------------- */

static gsize
map_bytes (const CcMapHeader * h)
{
  const gsize luma = (gsize) h->out_w * h->out_h, chroma = luma / 4;
  return CC_MAP_HEADER + luma * 6 + chroma * 6;
}

/* Parse and check a map blob; FALSE (with a warning naming the problem) if it cannot be used. */
static gboolean
parse_map (GstCuecastRemap * self, GBytes * bytes, CcMapHeader * out)
{
  gsize size = 0;
  const guint8 *data = g_bytes_get_data (bytes, &size);
  if (size < CC_MAP_HEADER || memcmp (data, CC_MAP_MAGIC, 8) != 0) {
    GST_ELEMENT_WARNING (self, LIBRARY, SETTINGS, ("map rejected"),
        ("not a cuecast remap table (no " CC_MAP_MAGIC " header)"));
    return FALSE;
  }
  memcpy (out, data, sizeof *out);
  if (out->in_w < 2 || out->in_h < 2 || out->out_w < 2 || out->out_h < 2 || out->out_w % 2
      || out->out_h % 2 || out->in_w > 16384 || out->in_h > 16384 || out->out_w > 16384
      || out->out_h > 16384) {
    GST_ELEMENT_WARNING (self, LIBRARY, SETTINGS, ("map rejected"),
        ("bad sizes %ux%u -> %ux%u (even output sizes up to 16384)", out->in_w, out->in_h,
            out->out_w, out->out_h));
    return FALSE;
  }
  if (size != map_bytes (out)) {
    GST_ELEMENT_WARNING (self, LIBRARY, SETTINGS, ("map rejected"),
        ("%" G_GSIZE_FORMAT " bytes, expected %" G_GSIZE_FORMAT " for %ux%u", size,
            map_bytes (out), out->out_w, out->out_h));
    return FALSE;
  }
  return TRUE;
}

static void
set_map (GstCuecastRemap * self, GBytes * bytes)
{
  CcMapHeader hdr;
  gboolean resize = FALSE;
  if (bytes != NULL && !parse_map (self, bytes, &hdr))
    return;
  g_mutex_lock (&self->lock);
  if (bytes == NULL)
    resize = self->map != NULL;
  else
    resize = self->map == NULL || hdr.in_w != self->hdr.in_w || hdr.in_h != self->hdr.in_h
        || hdr.out_w != self->hdr.out_w || hdr.out_h != self->hdr.out_h;
  if (self->map)
    g_bytes_unref (self->map);
  self->map = bytes ? g_bytes_ref (bytes) : NULL;
  if (bytes)
    self->hdr = hdr;
  g_mutex_unlock (&self->lock);
  if (resize)
    gst_base_transform_reconfigure_src (GST_BASE_TRANSFORM (self));
}

/* -- properties ------------------------------------------------------------------------------------- */

static void
gst_cuecast_remap_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (object);
  if (cc_common_set_property (GST_OBJECT (self), &self->common, prop_id, value))
    return;
  switch (prop_id) {
    case PROP_MAP:
      set_map (self, g_value_get_boxed (value));
      break;
    case PROP_LUMA_LUT:{
      GBytes *lut = g_value_get_boxed (value);
      gsize size = 0;
      const guint8 *data = lut ? g_bytes_get_data (lut, &size) : NULL;
      if (lut != NULL && size != 256) {
        GST_ELEMENT_WARNING (self, LIBRARY, SETTINGS, ("luma-lut rejected"),
            ("%" G_GSIZE_FORMAT " bytes, expected 256", size));
        break;
      }
      g_mutex_lock (&self->lock);
      self->lut_on = data != NULL;
      if (data)
        memcpy (self->lut, data, 256);
      g_mutex_unlock (&self->lock);
      break;
    }
    case PROP_ENABLED:{
      gboolean enabled = g_value_get_boolean (value), changed;
      g_mutex_lock (&self->lock);
      changed = enabled != self->enabled;
      self->enabled = enabled;
      g_mutex_unlock (&self->lock);
      gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), !enabled);
      if (changed)
        gst_base_transform_reconfigure_src (GST_BASE_TRANSFORM (self));
      break;
    }
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_cuecast_remap_get_property (GObject * object, guint prop_id, GValue * value, GParamSpec * pspec)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (object);
  if (cc_common_get_property (GST_OBJECT (self), &self->common, prop_id, value))
    return;
  switch (prop_id) {
    case PROP_MAP:
      g_mutex_lock (&self->lock);
      g_value_set_boxed (value, self->map);
      g_mutex_unlock (&self->lock);
      break;
    case PROP_LUMA_LUT:
      g_mutex_lock (&self->lock);
      g_value_take_boxed (value, self->lut_on ? g_bytes_new (self->lut, 256) : NULL);
      g_mutex_unlock (&self->lock);
      break;
    case PROP_ENABLED:
      g_mutex_lock (&self->lock);
      g_value_set_boolean (value, self->enabled);
      g_mutex_unlock (&self->lock);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

/* -- negotiation ------------------------------------------------------------------------------------ */

static GstCaps *
gst_cuecast_remap_transform_caps (GstBaseTransform * bt, GstPadDirection direction, GstCaps * caps,
    GstCaps * filter)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (bt);
  gboolean resize;
  gint to_w = 0, to_h = 0;

  g_mutex_lock (&self->lock);
  resize = self->enabled && self->map != NULL;
  if (resize) {
    to_w = direction == GST_PAD_SINK ? (gint) self->hdr.out_w : (gint) self->hdr.in_w;
    to_h = direction == GST_PAD_SINK ? (gint) self->hdr.out_h : (gint) self->hdr.in_h;
  }
  g_mutex_unlock (&self->lock);

  GstCaps *res = gst_caps_new_empty ();
  for (guint i = 0; i < gst_caps_get_size (caps); i++) {
    GstStructure *s = gst_structure_copy (gst_caps_get_structure (caps, i));
    if (resize)
      gst_structure_set (s, "width", G_TYPE_INT, to_w, "height", G_TYPE_INT, to_h, NULL);
    res = gst_caps_merge_structure (res, s);
  }
  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, res, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (res);
    res = tmp;
  }
  return res;
}

static gboolean
gst_cuecast_remap_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (filter);
  gboolean enabled, have_map;
  CcMapHeader hdr;

  g_mutex_lock (&self->lock);
  enabled = self->enabled;
  have_map = self->map != NULL;
  hdr = self->hdr;
  g_mutex_unlock (&self->lock);

  if (!enabled)
    return TRUE;
  if (!have_map) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("no remap table"),
        ("set the map property before the element starts"));
    return FALSE;
  }
  if ((guint) GST_VIDEO_INFO_WIDTH (in_info) != hdr.in_w
      || (guint) GST_VIDEO_INFO_HEIGHT (in_info) != hdr.in_h
      || (guint) GST_VIDEO_INFO_WIDTH (out_info) != hdr.out_w
      || (guint) GST_VIDEO_INFO_HEIGHT (out_info) != hdr.out_h) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("remap table does not fit the stream"),
        ("table %ux%u -> %ux%u, stream %dx%d -> %dx%d", hdr.in_w, hdr.in_h, hdr.out_w, hdr.out_h,
            GST_VIDEO_INFO_WIDTH (in_info), GST_VIDEO_INFO_HEIGHT (in_info),
            GST_VIDEO_INFO_WIDTH (out_info), GST_VIDEO_INFO_HEIGHT (out_info)));
    return FALSE;
  }
  return TRUE;
}

/* -- frames ----------------------------------------------------------------------------------------- */

typedef struct
{
  GstVideoFrame *in, *out;
  const int16_t *luma_xy, *chroma_xy;
  const uint16_t *luma_frac, *chroma_frac;
  const uint8_t *lut;
  int out_w, out_h;
  CcKernel kernel;
} Job;

static void
run_part (void *arg, int part, int parts)
{
  const Job *j = arg;
  GstVideoFrame *in = j->in, *out = j->out;
  const int in_w = GST_VIDEO_FRAME_WIDTH (in), in_h = GST_VIDEO_FRAME_HEIGHT (in);
  const int y0 = j->out_h * part / parts, y1 = j->out_h * (part + 1) / parts;
  const int ch = j->out_h / 2, c0 = ch * part / parts, c1 = ch * (part + 1) / parts;

  cc_remap_plane (j->kernel, GST_VIDEO_FRAME_PLANE_DATA (in, 0), GST_VIDEO_FRAME_PLANE_STRIDE (in, 0),
      in_w, in_h, GST_VIDEO_FRAME_PLANE_DATA (out, 0), GST_VIDEO_FRAME_PLANE_STRIDE (out, 0),
      j->luma_xy, j->luma_frac, j->out_w, y0, y1, LUMA_BORDER, j->lut);
  for (int p = 1; p <= 2; p++)
    cc_remap_plane (j->kernel, GST_VIDEO_FRAME_PLANE_DATA (in, p), GST_VIDEO_FRAME_PLANE_STRIDE (in, p),
        (in_w + 1) / 2, (in_h + 1) / 2, GST_VIDEO_FRAME_PLANE_DATA (out, p),
        GST_VIDEO_FRAME_PLANE_STRIDE (out, p), j->chroma_xy, j->chroma_frac, j->out_w / 2, c0, c1,
        CHROMA_BORDER, NULL);
}

static GstFlowReturn
gst_cuecast_remap_transform_frame (GstVideoFilter * filter, GstVideoFrame * in, GstVideoFrame * out)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (filter);
  guint8 lut[256];
  gboolean lut_on;
  GBytes *map;
  CcMapHeader hdr;

  g_mutex_lock (&self->lock);
  map = self->map ? g_bytes_ref (self->map) : NULL;
  hdr = self->hdr;
  lut_on = self->lut_on;
  if (lut_on)
    memcpy (lut, self->lut, sizeof lut);
  g_mutex_unlock (&self->lock);

  if (map == NULL || (guint) GST_VIDEO_FRAME_WIDTH (in) != hdr.in_w
      || (guint) GST_VIDEO_FRAME_HEIGHT (in) != hdr.in_h
      || (guint) GST_VIDEO_FRAME_WIDTH (out) != hdr.out_w
      || (guint) GST_VIDEO_FRAME_HEIGHT (out) != hdr.out_h) {
    /* a new table of another size arrived: the renegotiation it asked for comes with the next frame */
    if (map)
      g_bytes_unref (map);
    GST_DEBUG_OBJECT (self, "table and frame sizes differ: frame dropped while renegotiating");
    return GST_BASE_TRANSFORM_FLOW_DROPPED;
  }

  const guint8 *data = g_bytes_get_data (map, NULL);
  const gsize luma = (gsize) hdr.out_w * hdr.out_h, chroma = luma / 4;
  Job job = {
    .in = in, .out = out,
    .luma_xy = (const int16_t *) (data + CC_MAP_HEADER),
    .luma_frac = (const uint16_t *) (data + CC_MAP_HEADER + luma * 4),
    .chroma_xy = (const int16_t *) (data + CC_MAP_HEADER + luma * 6),
    .chroma_frac = (const uint16_t *) (data + CC_MAP_HEADER + luma * 6 + chroma * 4),
    .lut = lut_on ? lut : NULL,
    .out_w = (int) hdr.out_w, .out_h = (int) hdr.out_h,
    .kernel = cc_common_kernel (GST_OBJECT (self), &self->common),
  };
  cc_common_run (GST_OBJECT (self), &self->common, run_part, &job);
  g_bytes_unref (map);
  return GST_FLOW_OK;
}

static gboolean
gst_cuecast_remap_stop (GstBaseTransform * bt)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (bt);
  cc_common_stop (&self->common);
  return TRUE;
}

/* -- GObject ---------------------------------------------------------------------------------------- */

static void
gst_cuecast_remap_finalize (GObject * object)
{
  GstCuecastRemap *self = GST_CUECAST_REMAP (object);
  cc_common_stop (&self->common);
  if (self->map)
    g_bytes_unref (self->map);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (gst_cuecast_remap_parent_class)->finalize (object);
}

static void
gst_cuecast_remap_init (GstCuecastRemap * self)
{
  g_mutex_init (&self->lock);
  self->enabled = TRUE;
}

static void
gst_cuecast_remap_class_init (GstCuecastRemapClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *bt_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *vf_class = GST_VIDEO_FILTER_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (cuecast_remap_debug, "cuecastremap", 0, "cuecast remap");

  gobject_class->set_property = gst_cuecast_remap_set_property;
  gobject_class->get_property = gst_cuecast_remap_get_property;
  gobject_class->finalize = gst_cuecast_remap_finalize;

  g_object_class_install_property (gobject_class, PROP_MAP,
      g_param_spec_boxed ("map", "Remap table",
          "Where each output pixel samples the input (" CC_MAP_MAGIC " layout, made by cuecast)",
          G_TYPE_BYTES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_LUMA_LUT,
      g_param_spec_boxed ("luma-lut", "Luma lookup table",
          "256 bytes applied to the remapped luma (brightness/contrast); NULL for none",
          G_TYPE_BYTES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_ENABLED,
      g_param_spec_boolean ("enabled", "Enabled", "Remap frames; false passes them through untouched",
          TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  cc_common_install (gobject_class, "remap");

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "cuecast remap", "Filter/Effect/Video",
      "Applies a remap table (fisheye correction, table view) to I420 frames, bit-exact with cv2.remap",
      "cuecast");

  bt_class->transform_caps = GST_DEBUG_FUNCPTR (gst_cuecast_remap_transform_caps);
  bt_class->stop = GST_DEBUG_FUNCPTR (gst_cuecast_remap_stop);
  bt_class->passthrough_on_same_caps = FALSE;
  vf_class->set_info = GST_DEBUG_FUNCPTR (gst_cuecast_remap_set_info);
  vf_class->transform_frame = GST_DEBUG_FUNCPTR (gst_cuecast_remap_transform_frame);
}
