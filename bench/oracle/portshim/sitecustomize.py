"""Port shim for outside clients run by bench/oracle (put this folder on PYTHONPATH).

Why: a client such as mtkclient finds serial ports with pyserial's
`serial.tools.list_ports.comports()`, which only lists /dev/ttyACM* and similar kernel
nodes. A virtual phone lives on a pty. Creating /dev/ttyACM* links would make the virtual
phone visible to every program on the machine (other test runs would open it), so instead the
ports named in ROMKIT_ORACLE_PORTS (colon-separated paths, e.g. a private symlink
.../ttyACM-romkit that the harness re-points when the phone re-enumerates) are added to the
listing of this one process. Only the port listing is touched, never the client's protocol code.
"""

import os

_extra = [p for p in os.environ.get("ROMKIT_ORACLE_PORTS", "").split(":") if p]

if _extra:
    try:
        from serial.tools import list_ports_common, list_ports_linux
    except ImportError:  # pyserial missing: nothing to extend
        pass
    else:
        _orig = list_ports_linux.comports

        def comports(include_links: bool = False):  # type: ignore[no-untyped-def]
            found = list(_orig(include_links))
            for path in _extra:
                if os.path.exists(path) and all(p.device != path for p in found):
                    info = list_ports_common.ListPortInfo(path, skip_link_detection=True)
                    info.description = "romkit virtual MT6589"
                    info.hwid = "USB VID:PID=0E8D:0003 romkit-sim"
                    info.vid, info.pid = 0x0E8D, 0x0003
                    found.append(info)
            return found

        list_ports_linux.comports = comports
        try:
            from serial.tools import list_ports as _lp

            _lp.comports = comports
        except ImportError:
            pass

    # On real USB (cdc_acm) a completed write() is already on its way to the phone, so a
    # client's "flush output" right after writing (mtkclient seriallib.py write() calls
    # flushOutput() after every write) discards nothing. On a pty, unread bytes still sit in
    # the phone's input buffer and TCOFLUSH on our end throws them away (Linux pty_flush_buffer
    # flushes the other side). Make that call behave as on USB for the listed ports only.
    try:
        import serial as _serial
    except ImportError:
        pass
    else:
        _reset_out = _serial.Serial.reset_output_buffer
        _real = {os.path.realpath(p) for p in _extra}

        def reset_output_buffer(self):  # type: ignore[no-untyped-def]
            port = getattr(self, "port", None) or ""
            if port in _extra or os.path.realpath(port) in _real or os.path.realpath(
                    port).startswith("/dev/pts/"):
                return None
            return _reset_out(self)

        _serial.Serial.reset_output_buffer = reset_output_buffer
