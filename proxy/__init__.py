"""nextpvr-hls-proxy: an HLS and MPEG-TS streaming reverse proxy for NextPVR."""

__version__ = "0.1.0"
__all__ = ["__version__"]
