"""romkit: take a MediaTek phone from bootloop to flashed-and-verified without SP Flash Tool."""

__version__ = "0.1.0"
