#pragma once
#include <gst/base/gstbasetransform.h>
#include <gst/video/video.h>

G_BEGIN_DECLS
#define GST_TYPE_CUECAST_PACK (gst_cuecast_pack_get_type ())
G_DECLARE_FINAL_TYPE (GstCuecastPack, gst_cuecast_pack, GST, CUECAST_PACK, GstBaseTransform)
GST_ELEMENT_REGISTER_DECLARE (cuecastpack);

/* The frame trailer after the packed image (src/cuecast/protocol/frame.py is the reference; keep both in step). */
#define CC_TRAILER_SIZE 128
#define CC_TRAILER_MAGIC "CUECASTF"
#define CC_TRAILER_VERSION 2
#define CC_GEOMETRY_SIZE 64
#define CC_FLAG_PLACEHOLDER 1u
/* Frame metadata travels in buffer fields (pipeline.py sets them; Python cannot add metas to a buffer it
 * shares): OFFSET = sequence number, OFFSET_END = capture time (CLOCK_MONOTONIC ns), and this flag. */
#define CC_BUFFER_FLAG_PLACEHOLDER GST_BUFFER_FLAG_LAST

G_END_DECLS
