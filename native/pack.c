/* cuecastpack: I420 in; out, the frame packed (BGR, or I420 as is) and cuecast's 128-byte metadata trailer
 * after it, written straight into the memory of the shmsink that follows (no copy there).
 *
 * BGR is OpenCV's COLOR_YUV2BGR_I420 arithmetic, rows split over a few threads. The trailer's first half
 * comes from the buffer (sequence number, capture time and placeholder flag, see pack.h), its second half is the `geometry` property (the view and its millimetre mapping,
 * packed by cuecast/protocol/frame.py). When the shared area is full (a consumer holds every block) the frame is
 * dropped here instead of making shmsink wait: a stalled reader never holds up the pipeline. */
#include "pack.h"

#include <string.h>

#include "element.h"

GST_DEBUG_CATEGORY_STATIC (cuecast_pack_debug);
#define GST_CAT_DEFAULT cuecast_pack_debug

struct _GstCuecastPack
{
  GstBaseTransform parent;

  GstVideoInfo in_info, out_info;
  GstAllocator *allocator;      /* downstream's (shmsink's), or NULL for plain memory */
  GstAllocationParams params;
  CcCommon common;              /* threads, kernels, statistics (element.h) */

  GMutex lock;                  /* guards geometry */
  guint8 geometry[CC_GEOMETRY_SIZE];

  guint64 dropped;              /* object lock */
};

enum
{
  PROP_GEOMETRY = CC_PROP_LAST,
  PROP_DROPPED,
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE ("I420")));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE ("{ BGR, I420 }")));

G_DEFINE_TYPE (GstCuecastPack, gst_cuecast_pack, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (cuecastpack, "cuecastpack", GST_RANK_NONE, GST_TYPE_CUECAST_PACK);

/* Bytes of the packed image (rows without padding) for a format. */
static gsize
image_bytes (const GstVideoInfo * info)
{
  const gsize w = GST_VIDEO_INFO_WIDTH (info), h = GST_VIDEO_INFO_HEIGHT (info);
  if (GST_VIDEO_INFO_FORMAT (info) == GST_VIDEO_FORMAT_BGR)
    return w * h * 3;
  return w * h + 2 * ((w / 2) * (h / 2));
}

/* -- properties ------------------------------------------------------------------------------------- */

static void
gst_cuecast_pack_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstCuecastPack *self = GST_CUECAST_PACK (object);
  if (cc_common_set_property (GST_OBJECT (self), &self->common, prop_id, value))
    return;
  switch (prop_id) {
    case PROP_GEOMETRY:{
      GBytes *bytes = g_value_get_boxed (value);
      gsize size = 0;
      const guint8 *data = bytes ? g_bytes_get_data (bytes, &size) : NULL;
      if (size > CC_GEOMETRY_SIZE) {
        GST_ELEMENT_WARNING (self, LIBRARY, SETTINGS, ("geometry rejected"),
            ("%" G_GSIZE_FORMAT " bytes, at most %d", size, CC_GEOMETRY_SIZE));
        break;
      }
      g_mutex_lock (&self->lock);
      memset (self->geometry, 0, sizeof self->geometry);
      if (data)
        memcpy (self->geometry, data, size);
      g_mutex_unlock (&self->lock);
      break;
    }
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_cuecast_pack_get_property (GObject * object, guint prop_id, GValue * value, GParamSpec * pspec)
{
  GstCuecastPack *self = GST_CUECAST_PACK (object);
  if (cc_common_get_property (GST_OBJECT (self), &self->common, prop_id, value))
    return;
  switch (prop_id) {
    case PROP_GEOMETRY:
      g_mutex_lock (&self->lock);
      g_value_take_boxed (value, g_bytes_new (self->geometry, sizeof self->geometry));
      g_mutex_unlock (&self->lock);
      break;
    case PROP_DROPPED:
      GST_OBJECT_LOCK (self);
      g_value_set_uint64 (value, self->dropped);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

/* -- negotiation and allocation --------------------------------------------------------------------- */

static GstCaps *
gst_cuecast_pack_transform_caps (GstBaseTransform * bt, GstPadDirection direction, GstCaps * caps,
    GstCaps * filter)
{
  GstCaps *res = gst_caps_new_empty ();
  for (guint i = 0; i < gst_caps_get_size (caps); i++) {
    GstStructure *s = gst_structure_copy (gst_caps_get_structure (caps, i));
    if (direction == GST_PAD_SINK) {
      GValue list = G_VALUE_INIT, item = G_VALUE_INIT;
      g_value_init (&list, GST_TYPE_LIST);
      g_value_init (&item, G_TYPE_STRING);
      g_value_set_static_string (&item, "BGR");
      gst_value_list_append_value (&list, &item);
      g_value_set_static_string (&item, "I420");
      gst_value_list_append_value (&list, &item);
      gst_structure_take_value (s, "format", &list);
      g_value_unset (&item);
    } else {
      gst_structure_set (s, "format", G_TYPE_STRING, "I420", NULL);
    }
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
gst_cuecast_pack_set_caps (GstBaseTransform * bt, GstCaps * incaps, GstCaps * outcaps)
{
  GstCuecastPack *self = GST_CUECAST_PACK (bt);
  if (!gst_video_info_from_caps (&self->in_info, incaps)
      || !gst_video_info_from_caps (&self->out_info, outcaps))
    return FALSE;
  if (GST_VIDEO_INFO_WIDTH (&self->in_info) != GST_VIDEO_INFO_WIDTH (&self->out_info)
      || GST_VIDEO_INFO_HEIGHT (&self->in_info) != GST_VIDEO_INFO_HEIGHT (&self->out_info))
    return FALSE;
  return TRUE;
}

static gboolean
gst_cuecast_pack_transform_size (GstBaseTransform * bt, GstPadDirection direction, GstCaps * caps,
    gsize size, GstCaps * othercaps, gsize * othersize)
{
  GstVideoInfo info;
  if (direction != GST_PAD_SINK || !gst_video_info_from_caps (&info, othercaps))
    return FALSE;
  *othersize = image_bytes (&info) + CC_TRAILER_SIZE;
  return TRUE;
}

static gboolean
gst_cuecast_pack_decide_allocation (GstBaseTransform * bt, GstQuery * query)
{
  GstCuecastPack *self = GST_CUECAST_PACK (bt);
  GstAllocator *allocator = NULL;
  GstAllocationParams params;
  gst_allocation_params_init (&params);
  if (gst_query_get_n_allocation_params (query) > 0)
    gst_query_parse_nth_allocation_param (query, 0, &allocator, &params);
  if (self->allocator)
    gst_object_unref (self->allocator);
  self->allocator = allocator;  /* owned (parse gives a reference) */
  self->params = params;
  GST_DEBUG_OBJECT (self, "allocating from %" GST_PTR_FORMAT, allocator);
  return TRUE;
}

static GstFlowReturn
gst_cuecast_pack_prepare_output_buffer (GstBaseTransform * bt, GstBuffer * inbuf, GstBuffer ** outbuf)
{
  GstCuecastPack *self = GST_CUECAST_PACK (bt);
  const gsize size = image_bytes (&self->out_info) + CC_TRAILER_SIZE;
  GstMemory *mem;

  if (self->allocator != NULL) {
    mem = gst_allocator_alloc (self->allocator, size, &self->params);
    if (mem == NULL || mem->allocator != self->allocator) {
      /* shmsink's allocator falls back to plain memory when its area is full; shmsink would then wait
       * for a free block. Drop this frame instead: the reader gets the next one. */
      if (mem)
        gst_memory_unref (mem);
      GST_OBJECT_LOCK (self);
      self->dropped++;
      GST_OBJECT_UNLOCK (self);
      GST_LOG_OBJECT (self, "shared area full: frame dropped");
      return GST_BASE_TRANSFORM_FLOW_DROPPED;
    }
  } else {
    mem = gst_allocator_alloc (NULL, size, NULL);
    if (mem == NULL)
      return GST_FLOW_ERROR;
  }
  *outbuf = gst_buffer_new ();
  gst_buffer_append_memory (*outbuf, mem);
  gst_buffer_copy_into (*outbuf, inbuf, GST_BUFFER_COPY_FLAGS | GST_BUFFER_COPY_TIMESTAMPS, 0, -1);
  return GST_FLOW_OK;
}

/* -- frames ----------------------------------------------------------------------------------------- */

typedef struct
{
  GstVideoFrame *in;
  guint8 *dst;
  int width, height;
  CcKernel kernel;
} BgrJob;

static void
bgr_part (void *arg, int part, int parts)
{
  const BgrJob *j = arg;
  GstVideoFrame *in = j->in;
  /* row pairs, so each part starts on an even row (chroma rows are shared by two luma rows) */
  const int pairs = j->height / 2;
  const int r0 = 2 * (pairs * part / parts), r1 = part == parts - 1 ? j->height : 2 * (pairs * (part + 1) / parts);
  cc_i420_to_bgr (j->kernel, GST_VIDEO_FRAME_PLANE_DATA (in, 0), GST_VIDEO_FRAME_PLANE_STRIDE (in, 0),
      GST_VIDEO_FRAME_PLANE_DATA (in, 1), GST_VIDEO_FRAME_PLANE_STRIDE (in, 1),
      GST_VIDEO_FRAME_PLANE_DATA (in, 2), GST_VIDEO_FRAME_PLANE_STRIDE (in, 2),
      j->dst, j->width * 3, j->width, r0, r1);
}

/* The same instant on the wall clock. The wall clock's offset from the monotonic one is read once per second
 * of capture time and shared by every cuecastpack of the process, so the outputs of one frame (the backend's
 * shared memory, the ring) write the same wall time into their trailers; it follows clock steps each second. */
#define WALL_SLOTS 8
static GMutex wall_lock;
static struct
{
  gint64 second;
  gint64 offset_ns;
} wall_slots[WALL_SLOTS];

static gint64
wall_of (gint64 capture)
{
  const gint64 second = capture / GST_SECOND;
  g_mutex_lock (&wall_lock);
  const int k = (int) (second % WALL_SLOTS);
  if (wall_slots[k].second != second || wall_slots[k].offset_ns == 0) {
    wall_slots[k].second = second;
    wall_slots[k].offset_ns = (g_get_real_time () - g_get_monotonic_time ()) * 1000;
  }
  const gint64 offset = wall_slots[k].offset_ns;
  g_mutex_unlock (&wall_lock);
  return capture + offset;
}

static void
write_trailer (GstCuecastPack * self, GstBuffer * inbuf, guint8 * t)
{
  const GstVideoInfo *out = &self->out_info;
  const guint32 fourcc = GST_VIDEO_INFO_FORMAT (out) == GST_VIDEO_FORMAT_BGR
      ? GST_MAKE_FOURCC ('B', 'G', 'R', '3') : GST_MAKE_FOURCC ('I', '4', '2', '0');
  const guint16 version = CC_TRAILER_VERSION, tsize = CC_TRAILER_SIZE;
  const guint32 w = GST_VIDEO_INFO_WIDTH (out), h = GST_VIDEO_INFO_HEIGHT (out);
  const guint32 flags = GST_BUFFER_FLAG_IS_SET (inbuf, CC_BUFFER_FLAG_PLACEHOLDER) ? CC_FLAG_PLACEHOLDER : 0;
  const guint64 seq = GST_BUFFER_OFFSET_IS_VALID (inbuf) ? GST_BUFFER_OFFSET (inbuf) : 0;
  const gint64 capture = GST_BUFFER_OFFSET_END_IS_VALID (inbuf) ? (gint64) GST_BUFFER_OFFSET_END (inbuf) : 0;
  const gint64 wall_ns = capture ? wall_of (capture) : 0;

  /* little-endian, the layout of frame.py's _HEAD: <8sHHIIIIQqq, zero-padded to 64 bytes */
  memset (t, 0, CC_TRAILER_SIZE);
  memcpy (t + 0, CC_TRAILER_MAGIC, 8);
  memcpy (t + 8, &version, 2);
  memcpy (t + 10, &tsize, 2);
  memcpy (t + 12, &w, 4);
  memcpy (t + 16, &h, 4);
  memcpy (t + 20, &fourcc, 4);
  memcpy (t + 24, &flags, 4);
  memcpy (t + 28, &seq, 8);
  memcpy (t + 36, &capture, 8);
  memcpy (t + 44, &wall_ns, 8);
  g_mutex_lock (&self->lock);
  memcpy (t + CC_TRAILER_SIZE - CC_GEOMETRY_SIZE, self->geometry, CC_GEOMETRY_SIZE);
  g_mutex_unlock (&self->lock);
}

static GstFlowReturn
gst_cuecast_pack_transform (GstBaseTransform * bt, GstBuffer * inbuf, GstBuffer * outbuf)
{
  GstCuecastPack *self = GST_CUECAST_PACK (bt);
  GstVideoFrame in;
  GstMapInfo out;

  if (!gst_video_frame_map (&in, &self->in_info, inbuf, GST_MAP_READ))
    return GST_FLOW_ERROR;
  if (!gst_buffer_map (outbuf, &out, GST_MAP_WRITE)) {
    gst_video_frame_unmap (&in);
    return GST_FLOW_ERROR;
  }
  const int w = GST_VIDEO_INFO_WIDTH (&self->out_info), h = GST_VIDEO_INFO_HEIGHT (&self->out_info);
  const gsize image = image_bytes (&self->out_info);
  const gint64 t0 = g_get_monotonic_time ();
  if (GST_VIDEO_INFO_FORMAT (&self->out_info) == GST_VIDEO_FORMAT_BGR) {
    BgrJob job = {.in = &in, .dst = out.data, .width = w, .height = h,
      .kernel = cc_common_kernel (GST_OBJECT (self), &self->common) };
    cc_common_run (GST_OBJECT (self), &self->common, bgr_part, &job);
  } else {
    guint8 *dst = out.data;
    const int cw = w / 2, ch = h / 2;
    cc_copy_plane (GST_VIDEO_FRAME_PLANE_DATA (&in, 0), GST_VIDEO_FRAME_PLANE_STRIDE (&in, 0), dst, w,
        w, 0, h);
    dst += (gsize) w * h;
    for (int p = 1; p <= 2; p++, dst += (gsize) cw * ch)
      cc_copy_plane (GST_VIDEO_FRAME_PLANE_DATA (&in, p), GST_VIDEO_FRAME_PLANE_STRIDE (&in, p), dst,
          cw, cw, 0, ch);
    cc_common_count (GST_OBJECT (self), &self->common, t0);
  }
  write_trailer (self, inbuf, out.data + image);
  gst_buffer_unmap (outbuf, &out);
  gst_video_frame_unmap (&in);
  return GST_FLOW_OK;
}

static gboolean
gst_cuecast_pack_stop (GstBaseTransform * bt)
{
  GstCuecastPack *self = GST_CUECAST_PACK (bt);
  cc_common_stop (&self->common);
  if (self->allocator)
    gst_object_unref (self->allocator);
  self->allocator = NULL;
  return TRUE;
}

/* -- GObject ---------------------------------------------------------------------------------------- */

static void
gst_cuecast_pack_finalize (GObject * object)
{
  GstCuecastPack *self = GST_CUECAST_PACK (object);
  cc_common_stop (&self->common);
  if (self->allocator)
    gst_object_unref (self->allocator);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (gst_cuecast_pack_parent_class)->finalize (object);
}

static void
gst_cuecast_pack_init (GstCuecastPack * self)
{
  g_mutex_init (&self->lock);
  gst_allocation_params_init (&self->params);
}

static void
gst_cuecast_pack_class_init (GstCuecastPackClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *bt_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (cuecast_pack_debug, "cuecastpack", 0, "cuecast shared-memory packing");

  gobject_class->set_property = gst_cuecast_pack_set_property;
  gobject_class->get_property = gst_cuecast_pack_get_property;
  gobject_class->finalize = gst_cuecast_pack_finalize;

  g_object_class_install_property (gobject_class, PROP_GEOMETRY,
      g_param_spec_boxed ("geometry", "Geometry",
          "Up to 64 bytes copied into the second half of every frame's trailer (view and mm mapping)",
          G_TYPE_BYTES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  cc_common_install (gobject_class, "packing");
  g_object_class_install_property (gobject_class, PROP_DROPPED,
      g_param_spec_uint64 ("dropped", "Dropped", "Frames dropped because the shared area was full",
          0, G_MAXUINT64, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "cuecast pack", "Filter/Converter/Video",
      "Packs I420 frames as BGR (or I420) with cuecast's metadata trailer into shmsink's memory",
      "cuecast");

  bt_class->transform_caps = GST_DEBUG_FUNCPTR (gst_cuecast_pack_transform_caps);
  bt_class->set_caps = GST_DEBUG_FUNCPTR (gst_cuecast_pack_set_caps);
  bt_class->transform_size = GST_DEBUG_FUNCPTR (gst_cuecast_pack_transform_size);
  bt_class->decide_allocation = GST_DEBUG_FUNCPTR (gst_cuecast_pack_decide_allocation);
  bt_class->prepare_output_buffer = GST_DEBUG_FUNCPTR (gst_cuecast_pack_prepare_output_buffer);
  bt_class->transform = GST_DEBUG_FUNCPTR (gst_cuecast_pack_transform);
  bt_class->stop = GST_DEBUG_FUNCPTR (gst_cuecast_pack_stop);
  bt_class->passthrough_on_same_caps = FALSE;
}
