#pragma once
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS
#define GST_TYPE_CUECAST_STAMP (gst_cuecast_stamp_get_type ())
G_DECLARE_FINAL_TYPE (GstCuecastStamp, gst_cuecast_stamp, GST, CUECAST_STAMP, GstBaseTransform)
GST_ELEMENT_REGISTER_DECLARE (cuecaststamp);
G_END_DECLS
