"""The flash layer: plan (what to do, checked first), engine (doing it on a phone), calibration
backup store, run journal, and the on-demand backup / restore / readback tools."""
