"""Live sessions (`streamrain preview`): a camera, a network stream or a lavfi graph derained with
bounded latency, shown in the preview window and/or recorded or re-streamed."""
