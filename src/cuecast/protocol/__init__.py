"""Everything that crosses a process boundary: the frame trailer (capture -> backend and ring), the typed
control messages and capture status (streaming <-> capture), and the hand-over from the supervisor to a
worker (runtime directory, heartbeat pipe, listening sockets)."""
