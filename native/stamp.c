/* cuecaststamp: turn a frame's capture wall time, carried in GST_BUFFER_OFFSET_END (ns since 1970; the H.264 hub
 * of src/cuecast/streaming/outputs/h264.py sets it, since Python cannot add metas to buffers it shares), into a
 * GstReferenceTimestampMeta "timestamp/x-ntp" (ns since 1900): what rtphdrextntp64 writes into each frame's first
 * RTP packet (RFC 6051), so an RTSP or WebRTC client reads every frame's capture time. Buffers without one
 * (OFFSET NONE: a placeholder frame) pass unchanged. */
#include "stamp.h"

#define NTP_UNIX_OFFSET_S G_GUINT64_CONSTANT (2208988800)

struct _GstCuecastStamp
{
  GstBaseTransform parent;
  GstCaps *ntp_caps;
};

G_DEFINE_TYPE (GstCuecastStamp, gst_cuecast_stamp, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (cuecaststamp, "cuecaststamp", GST_RANK_NONE, GST_TYPE_CUECAST_STAMP);

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS_ANY);

static GstFlowReturn
gst_cuecast_stamp_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstCuecastStamp *self = GST_CUECAST_STAMP (trans);

  if (GST_BUFFER_OFFSET (buf) != GST_BUFFER_OFFSET_NONE && GST_BUFFER_OFFSET_END (buf) != GST_BUFFER_OFFSET_NONE)
    gst_buffer_add_reference_timestamp_meta (buf, self->ntp_caps,
        GST_BUFFER_OFFSET_END (buf) + NTP_UNIX_OFFSET_S * GST_SECOND, GST_CLOCK_TIME_NONE);
  return GST_FLOW_OK;
}

static void
gst_cuecast_stamp_finalize (GObject * object)
{
  gst_caps_unref (GST_CUECAST_STAMP (object)->ntp_caps);
  G_OBJECT_CLASS (gst_cuecast_stamp_parent_class)->finalize (object);
}

static void
gst_cuecast_stamp_class_init (GstCuecastStampClass * klass)
{
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = gst_cuecast_stamp_finalize;
  GST_BASE_TRANSFORM_CLASS (klass)->transform_ip = gst_cuecast_stamp_transform_ip;
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "cuecast capture time stamp", "Filter/Metadata",
      "Adds each frame's capture wall time (buffer offset-end) as an NTP reference timestamp meta",
      "cuecast");
}

static void
gst_cuecast_stamp_init (GstCuecastStamp * self)
{
  self->ntp_caps = gst_caps_new_empty_simple ("timestamp/x-ntp");
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
}
