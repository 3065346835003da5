"""Remote consoles: one-time tokens (:mod:`.tokens`) and the noVNC proxy (:mod:`.proxy`)."""
