"""WebRTC playback over WHEP (POST an SDP offer to /whep/high, DELETE the session's Location), CORS for players
on another origin."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response

from cuecast.streaming.outputs.webrtc.branch import WebRtcOutput, WhepError
from cuecast.streaming.service import Service

# Lets WHEP players served from another origin talk to us (a bearer token still guards it if configured).
WHEP_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location, ETag"}


def router(service: Service) -> APIRouter:
    r = APIRouter()

    def webrtc() -> WebRtcOutput:
        if service.webrtc is None:
            raise HTTPException(404, "WebRTC is disabled in the config (webrtc.enabled)")
        return service.webrtc

    @r.post("/whep/high", status_code=201, summary="WebRTC playback of the high stream (WHEP)",
              description="Send an SDP offer (Content-Type: application/sdp, ICE candidates included); the "
                          "answer carries every server candidate (no trickle). DELETE the Location to end.",
              openapi_extra={"requestBody": {"required": True, "content": {"application/sdp": {
                  "schema": {"type": "string"}}}}},
              responses={201: {"content": {"application/sdp": {}}, "description": "SDP answer",
                               "headers": {"Location": {"schema": {"type": "string"}}}},
                         400: {"description": "Malformed SDP offer"}, 404: {"description": "WebRTC disabled"},
                         406: {"description": "No usable H.264 in the offer"},
                         413: {"description": "Body too large"}, 415: {"description": "Not application/sdp"},
                         503: {"description": "Viewer limit reached, or no frames yet"}})
    async def whep_offer(request: Request) -> Response:
        output = webrtc()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise HTTPException(415, "send the SDP offer with Content-Type: application/sdp")
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "malformed SDP offer: not UTF-8 text") from None
        peer = request.client.host if request.client else "?"
        try:
            sid, answer = await asyncio.to_thread(output.answer, text, peer)
        except WhepError as e:
            headers = {"Retry-After": "5"} if e.status == 503 else None
            raise HTTPException(e.status, str(e), headers=headers) from None
        return Response(answer, status_code=201, media_type="application/sdp",
                        headers={**WHEP_CORS, "Location": f"/whep/high/{sid}", "ETag": f'"{sid}"'})

    @r.delete("/whep/high/{session}", summary="End a WebRTC (WHEP) session",
                responses={404: {"description": "No such session"}})
    async def whep_delete(session: str) -> Response:
        if not await asyncio.to_thread(webrtc().close, session):
            raise HTTPException(404, "no such WebRTC session: it ended already or never existed")
        return Response(status_code=200, headers=WHEP_CORS)

    @r.options("/whep/high", include_in_schema=False)
    @r.options("/whep/high/{session}", include_in_schema=False)
    async def whep_preflight() -> Response:
        return Response(status_code=204, headers={
            **WHEP_CORS, "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, authorization", "Accept-Post": "application/sdp"})

    return r
