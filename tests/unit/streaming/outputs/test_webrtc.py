"""What the WHEP endpoint accepts from an offer, with real SDP parsing (GstSdp): the H.264 format chosen,
and the 400/406 reasons for everything else."""

from __future__ import annotations

import pytest

from cuecast.streaming.outputs.webrtc.branch import WhepError, parse_offer

HEAD = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "a=fingerprint:sha-256 AA:BB\r\n")


def offer(formats: dict[int, tuple[str, str]], media: str = "video") -> str:
    pts = " ".join(str(p) for p in formats)
    lines = [f"m={media} 9 UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0", "a=ice-ufrag:abcd",
             "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=mid:0", "a=recvonly", "a=rtcp-mux"]
    for pt, (codec, fmtp) in formats.items():
        lines.append(f"a=rtpmap:{pt} {codec}")
        if fmtp:
            lines.append(f"a=fmtp:{pt} {fmtp}")
    return HEAD + "\r\n".join(lines) + "\r\n"


def test_picks_constrained_baseline_h264() -> None:
    text = offer({96: ("VP8/90000", ""),
                  102: ("H264/90000", "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
                  104: ("H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
                  108: ("H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
                  112: ("H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f")})
    chosen = parse_offer(text)
    assert (chosen.pt, chosen.profile, chosen.asymmetry) == (108, "42e01f", True)


@pytest.mark.parametrize("text, status, words", [
    ("", 400, "v=0"),
    ("GET / HTTP/1.1\r\n\r\n", 400, "v=0"),
    ("v=0\r\ns=-\r\n", 400, "no media"),
    (offer({96: ("VP8/90000", "")}).replace("a=ice-ufrag:abcd\r\n", ""), 400, "ice-ufrag"),
    (offer({96: ("VP8/90000", "")}).replace("a=fingerprint:sha-256 AA:BB\r\n", ""), 400, "fingerprint"),
    (offer({111: ("opus/48000/2", "")}, media="audio"), 406, "no video"),
    (offer({96: ("VP8/90000", ""), 98: ("VP9/90000", "")}), 406, "VP8, VP9"),
    (offer({112: ("H264/90000", "packetization-mode=1;profile-level-id=640c1f")}), 406, "no usable H.264"),
    (offer({102: ("H264/90000", "packetization-mode=0;profile-level-id=42e01f")}), 406, "packetization-mode=1"),
])
def test_refusals_name_the_problem(text: str, status: int, words: str) -> None:
    with pytest.raises(WhepError) as e:
        parse_offer(text)
    assert e.value.status == status
    assert words in str(e.value)
