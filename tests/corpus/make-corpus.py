#!/usr/bin/env python3
"""Writes the hostile-tar corpus (tests/corpus/tar/) that Hardening/CorpusTests builds in CI.

Each NAME.tar / NAME.tar.gz has NAME.expect: text the refusal must contain. Rerun after
changing a case: python3 tests/corpus/make-corpus.py (deterministic: fixed times, no owners).
"""
import gzip, io, os, tarfile

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tar")


def entry(name, type_=tarfile.REGTYPE, data=b"", linkname="", size=None, pax=None):
    t = tarfile.TarInfo(name)
    t.type, t.mtime, t.mode, t.linkname = type_, 1700000000, 0o644, linkname
    t.size = len(data) if size is None else size
    if pax:
        t.pax_headers = pax
    return t, data


def tar(entries, fmt=tarfile.PAX_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def gz(data):
    return gzip.compress(data, mtime=0)


def claim_size(name, size):
    """A ustar header whose size field claims `size` (base-256), with no data behind it."""
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"\x80" + size.to_bytes(11, "big")
    h[136:148] = b"14000000000\0"
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = ("%06o\0 " % sum(h)).encode()
    return bytes(h) + b"\0" * 1024


def write(name, data, expect):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    base = name.split(".tar")[0]
    with open(os.path.join(HERE, base + ".expect"), "w") as f:
        f.write(expect + "\n")


good = tar([entry("etc/", tarfile.DIRTYPE), entry("etc/hostname", data=b"corpus\n")])
write("dotdot-entry.tar", tar([entry("ok/", tarfile.DIRTYPE), entry("../evil", data=b"x")]), "../evil")
write("absolute-entry.tar", tar([entry("/etc/vessel-corpus-evil", data=b"x")]), "vessel-corpus-evil")
write("entry-under-symlink.tar", tar([entry("link", tarfile.SYMTYPE, linkname="/etc"), entry("link/evil", data=b"x")]), "link")
write("hardlink-to-missing-target.tar", tar([entry("dangling", tarfile.LNKTYPE, linkname="no-such-target")]), "no-such-target")
write("hardlink-escaping-the-root.tar", tar([entry("esc", tarfile.LNKTYPE, linkname="../../etc/passwd")]), "esc")
write("entry-claiming-1-EiB.tar", claim_size("huge", 1 << 60), "claims 1152921504606846976 bytes")
write("name-component-over-255-bytes.tar", tar([entry("d/" + "n" * 300, data=b"x")]), "255")
write("name-of-4000-bytes.tar", tar([entry("a" * 4000, data=b"x")]), "more characters")
write("truncated-gzip.tar.gz", gz(good + b"\0" * 20000)[:-30], "truncated")
write("corrupt-gzip.tar.gz", (lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:])(gz(good)), "gzip")
write("gzip-with-trailing-garbage.tar.gz", gz(good) + b"this is not gzip", "trailing garbage")
write("bad-header-checksum.tar", (lambda b: b[:0] + b"X" + b[1:])(good), "checksum")
write("pax-xattr-huge-length.tar", tar([entry("f", data=b"x", pax={"SCHILY.xattr.user.a": "v" * 70000})]), "extended attributes of '/f'")
