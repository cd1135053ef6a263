"""Run storage in Tiled: the embedded and shared servers, the journal, replay."""
