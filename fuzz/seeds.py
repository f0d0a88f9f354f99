#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (docs/fuzzing.md): well-formed frames of every kind
the parsers handle, the two malformed TCP/UDP headers of issue 17, the real INX in each
encoding, small PE images, and op sequences for the ring and OID targets. Run from fuzz/;
the PE seeds are copied from images the test suite builds (pass their paths)."""
import os, struct, sys

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s

MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
SRC = bytes([0x02, 0, 0, 0, 0, 1])

def eth(ethertype, vlan=None):
    h = MAC + SRC
    if vlan is not None:
        h += struct.pack("!HH", 0x8100, vlan)
    return h + struct.pack("!H", ethertype)

def tcp(payload, doff=5, flags=0x18):
    return struct.pack("!HHIIBBHHH", 12345, 80, 1, 0, doff << 4, flags, 65535, 0, 0) + b"\x01" * (4 * doff - 20 if doff > 5 else 0) + payload

def udp(payload, length=None):
    return struct.pack("!HHHH", 5353, 53, length if length is not None else 8 + len(payload), 0) + payload

def ipv4(proto, l4, fix=True, total=None):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total if total is not None else 20 + len(l4), 7, 0x4000, 64, proto, 0,
                    bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    h = h[:10] + struct.pack("!H", (~csum(h)) & 0xFFFF) + h[12:]
    if fix:
        off = 16 if proto == 6 else 6
        pseudo = h[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        l4 = l4[:off] + b"\0\0" + l4[off + 2:]
        c = (~csum(pseudo + l4)) & 0xFFFF
        if c == 0 and proto == 17:
            c = 0xFFFF
        l4 = l4[:off] + struct.pack("!H", c) + l4[off + 2:]
    return h + l4

def ipv6(proto, l4, ext=b"", first=None):
    src = bytes(range(16)); dst = bytes(range(16, 32))
    nh = first if first is not None else proto
    h = struct.pack("!IHBB", 0x60000000, len(ext) + len(l4), nh, 64) + src + dst
    off = 16 if proto == 6 else 6
    pseudo = src + dst + struct.pack("!IxxxB", len(l4), proto)
    l4 = l4[:off] + b"\0\0" + l4[off + 2:]
    c = (~csum(pseudo + l4)) & 0xFFFF
    if c == 0 and proto == 17:
        c = 0xFFFF
    return h + ext + l4[:off] + struct.pack("!H", c) + l4[off + 2:]

def frames():
    p = bytes((i * 7) & 0xFF for i in range(200))
    out = {
        "tcp4": eth(0x0800) + ipv4(6, tcp(p)),
        "tcp4-options": eth(0x0800) + ipv4(6, tcp(p[:33], doff=8)),
        "udp4": eth(0x0800) + ipv4(17, udp(p[:77])),
        "tcp6": eth(0x86DD) + ipv6(6, tcp(p)),
        "udp6-hopbyhop": eth(0x86DD) + ipv6(17, udp(p[:40]), ext=bytes([17, 0, 1, 4, 0, 0, 0, 0]), first=0),
        "tcp4-vlan": eth(0x0800, vlan=0x2005) + ipv4(6, tcp(p[:99])),
        "udp4-vlan-prio": eth(0x0800, vlan=0xA000) + ipv4(17, udp(p[:10])),
        "arp": eth(0x0806) + bytes(28),
        # A hop-by-hop header after destination options (found by the packet target).
        "udp6-hopbyhop-second": eth(0x86DD) + ipv6(17, udp(p[:16]), ext=bytes([0, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 1, 4, 0, 0, 0, 0]), first=60),
        # Issue 17's two frames: a TCP data offset of 1, a UDP length past the IP payload.
        "tcp4-doff1": eth(0x0800) + ipv4(6, tcp(p, doff=1) if False else struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0x10, 0x18, 100, 0, 0) + p),
        "udp4-long": eth(0x0800) + ipv4(17, udp(p[:96], length=108)),
        "udp4-short": eth(0x0800) + ipv4(17, udp(p[:96], length=4)),
    }
    return out

def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def le16(v): return struct.pack("<H", v)
def le32(v): return struct.pack("<I", v)

def main():
    fr = frames()
    for name, f in fr.items():
        write("packet", name, f)
    # rx: tagging, VLAN filter, checksum mode (+ forged header), then length-prefixed frames.
    modes = [b"\x00", b"\x01", b"\x02", b"\x03\x02\x00\x00\x00\x00", b"\x03\x01\x22\x00\x10\x00",
             b"\x03\x03\x22\x00\x10\x00"]
    for i, (name, f) in enumerate(fr.items()):
        m = modes[i % len(modes)]
        write("rx", name, bytes([3]) + le16(5 if "vlan" in name else 0) + m + le16(len(f)) + f + le16(len(f)) + f)
    # tx: piece, list count, then per list: which-info byte, infos, frame count, frames.
    def lst(info_bits, infos, frames_):
        b = bytes([info_bits]) + b"".join(infos) + bytes([len(frames_) - 1])
        return b + b"".join(le16(len(x)) + x for x in frames_) + b"\x01"
    v4 = 1 | 4 | 16  # IPv4, TCP, IP header
    write("tx", "plain", b"\x00\x00" + lst(0, [], [fr["tcp4"]]) + b"\x00")
    write("tx", "fragmented", b"\x01\x07\x01" + lst(0, [], [fr["arp"], fr["udp4"]]) + lst(4, [le16(0x0051)], [fr["tcp6"]]) + b"\x00")
    write("tx", "checksum-tcp4", b"\x00\x00" + lst(1, [le32(v4 | (34 << 16))], [fr["tcp4"]]) + b"\x00")
    write("tx", "checksum-udp4", b"\x02\x05\x00" + lst(1, [le32(1 | 8 | 16)], [fr["udp4"]]) + b"\x00")
    write("tx", "checksum-tcp6", b"\x00\x00" + lst(1, [le32(2 | 4 | (54 << 16))], [fr["tcp6"]]) + b"\x00")
    write("tx", "checksum-doff1", b"\x00\x00" + lst(1, [le32(v4 | (34 << 16))], [fr["tcp4-doff1"]]) + b"\x00")
    write("tx", "checksum-udp-long", b"\x00\x00" + lst(1, [le32(1 | 8)], [fr["udp4-long"]]) + b"\x00")
    big = eth(0x0800) + ipv4(6, tcp(bytes((i * 13) & 0xFF for i in range(4000))))
    lso = 1000 | (34 << 20) | (1 << 30)
    write("tx", "lso4", b"\x00\x00" + lst(2, [le32(lso)], [b""]) + b"\x01" + big)
    # virtqueue: size, event_idx, then ops (see the target).
    write("virtqueue", "honest", bytes([3, 0]) + b"".join(
        [bytes([0, 2]) + le16(100) + b"\x00" + le16(2000) + b"\x01", bytes([2, 0]) + le32(50), bytes([6])] * 4))
    write("virtqueue", "event-idx", bytes([4, 1]) + bytes([0, 1]) + le16(1500) + b"\x01" + bytes([8, 0, 8, 1]) +
          bytes([2, 0]) + le32(1500) + bytes([6, 8, 2, 6, 8, 3]))
    write("virtqueue", "hostile", bytes([2, 0]) + bytes([0, 1]) + le16(10) + b"\x01" + bytes([3, 0]) + le32(7) + le32(9) +
          bytes([4, 1]) + le16(9) + bytes([6, 6, 8, 3, 0, 1]) + le16(10) + b"\x00")
    # oid: ops of (pick, query, cancel, length, bytes).
    def op(pick, query, length, data=b"", cancel=0, raw=None):
        b = bytes([pick]) + (le32(raw) if raw is not None else b"")
        return b + bytes([query, cancel]) + le16(length) + le16(len(data)) + data
    write("oid", "queries", b"".join(op(i, 1, 64) for i in range(0, 40)))
    write("oid", "sets", b"".join(op(i, 0, 4, le32(0x0F)) for i in range(0, 40)))
    write("oid", "filter-and-vlan", op(0xFF, 0, 4, le32(0x0B), raw=0x0001010E) + op(0xFF, 0, 4, le32(7), raw=0x0001021C) +
          op(0xFF, 1, 0, raw=0x0001010E) + op(0xFF, 0, 12, MAC + MAC[:5] + b"\x57", raw=0x01010103))
    # inf: the encodings byte (see the target) before the INX.
    inx = open("../inf/vionet.inx", "rb").read()
    for i, name in enumerate(["raw", "utf8", "utf8-bom", "utf16le"]):
        write("inf", "vionet-" + name, bytes([i | 4]) + inx)
    write("inf", "vionet-to-utf16", bytes([1 | 16]) + inx)
    # Two [Version] sections (found by the inf target): the stamper refuses the second.
    write("inf", "two-version-sections", bytes([1]) + inx + b"\r\n[Version]\r\nDriverVer = 01/01/1970,0.0.0.0\r\n")
    # DriverVer twice in [Version], and a malformed header that does not end [Version] (both
    # found by the inf target): refused, and stamped where the reader sees the section.
    write("inf", "driverver-twice", bytes([1]) + inx.replace(b"PnpLockDown", b"DriverVer = 01/01/1970,0.0.0.0\r\nPnpLockDown", 1))
    write("inf", "malformed-header-in-version", bytes([1]) + inx.replace(b"DriverVer", b"[Strings]junk\r\nDriverVer", 1))
    for path in sys.argv[1:]:
        write("pe", os.path.basename(path), open(path, "rb").read())

main()
