#!/usr/bin/env python3
"""Writes the crafted fuzz seeds in fuzz/seeds/{pclntab,inline_tree}: small
hand-built Go 1.20 pclntabs (and, for inline_tree, minimal ELF files around
them) whose headers or tables claim more than their bytes hold, the inputs
the resolver's bounds (tracer/src/resolve/{pclntab,inline}.rs) refuse.
`cargo xtask fuzz` copies them next to the seeds made from real binaries.

Run from anywhere: python3 fuzz/seeds/crafted.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC_GO120 = 0xFFFFFFF1
FUNC_LEN = 72


def names(lst):
    b, offs = b"", []
    for n in lst:
        offs.append(len(b))
        b += n.encode() + b"\0"
    return b, offs


def table(funcs, name_bytes, pctab):
    """Go 1.20 pclntab; funcs: (name_off, inl_pcdata, inl_tree) each."""
    n = len(funcs)
    funcname = 72
    cu = funcname + len(name_bytes)
    pcln = cu + len(pctab)
    t = struct.pack("<IBBBBQQQ", MAGIC_GO120, 0, 0, 1, 8, n, 0, 0)
    t += struct.pack("<5Q", funcname, cu, cu, cu, pcln)
    t += name_bytes + pctab
    ftab_len = (2 * n + 1) * 4
    for i in range(n):
        t += struct.pack("<II", i * 0x10, ftab_len + i * FUNC_LEN)
    t += struct.pack("<I", n * 0x10)
    for i, (name, pcd, tree) in enumerate(funcs):
        r = bytearray(FUNC_LEN)
        struct.pack_into("<II", r, 0, i * 0x10, name)
        struct.pack_into("<I", r, 28, 3)
        r[43] = 4
        struct.pack_into("<I", r, 52, pcd)
        struct.pack_into("<I", r, 68, tree)
        t += bytes(r)
    return t


def pc_values(mx):
    return b"\x02\x01" * (mx + 1) + b"\0"


def tree(name_offs):
    return b"".join(
        struct.pack("<IIII", 0, o, 0x80000000 | ((k + 1) % len(name_offs)), 0)
        for k, o in enumerate(name_offs)
    )


def elf(pcln, gofunc_image, nfunc, funcname_off):
    """A minimal x86-64 ELF: an R+X text segment (the functions' code,
    0x10 bytes each, INT3s) and an RW data segment holding the pclntab,
    runtime.moduledata (found by its first word, the pclntab address) with
    gofunc at 320, then the inline trees."""
    text_addr, data_addr = 0x401000, 0x600000
    text = b"\xcc" * (0x10 * nfunc)
    pcln_at = 0
    md_at = (len(pcln) + 7) & ~7
    md = bytearray(400)
    gofunc_at = md_at + len(md)
    struct.pack_into("<QQ", md, 0, data_addr + pcln_at, data_addr + pcln_at + funcname_off)
    struct.pack_into("<Q", md, 136, nfunc + 1)
    struct.pack_into("<QQ", md, 176, text_addr, text_addr + len(text))
    struct.pack_into("<Q", md, 320, data_addr + gofunc_at)
    data = pcln + b"\0" * (md_at - len(pcln)) + bytes(md) + gofunc_image
    ehdr_len, phdr_len = 64, 56
    text_off = ehdr_len + 2 * phdr_len
    data_off = (text_off + len(text) + 0xFFF) & ~0xFFF
    ehdr = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, text_addr, ehdr_len, 0, 0,
                        ehdr_len, phdr_len, 2, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, text_off, text_addr + 0, text_addr, len(text), len(text), 0x1000)
    ph += struct.pack("<IIQQQQQQ", 1, 6, data_off, data_addr, data_addr, len(data), len(data), 0x1000)
    # The text segment's address must match its file offset modulo the page
    # size for a loader; the resolver only needs vaddr ↔ offset.
    out = ehdr + ph + text
    out += b"\0" * (data_off - len(out)) + data
    return out


def write(d, name, b):
    with open(os.path.join(HERE, d, name), "wb") as f:
        f.write(b)


def main():
    # pclntab: header claims.
    nb, o = names(["main.a", "main.b", "main.c"])
    base = table([(x, 0, 0xFFFFFFFF) for x in o], nb, b"\0")
    t = bytearray(base)
    struct.pack_into("<Q", t, 8, 0xFFFFFFFF)
    write("pclntab", "nfunc-4294967295", t)
    t = bytearray(base)
    struct.pack_into("<Q", t, 64, 1 << 40)
    write("pclntab", "pclnoffset-past-end", t)
    # pclntab: 500 functions sharing one 16 KiB name (8 MB if copied).
    big = b"x" * ((16 << 10) - 1) + b"\0"
    write("pclntab", "shared-16k-name", table([(0, 0, 0xFFFFFFFF)] * 500, big, b"\0"))
    write("pclntab", "valid-3", base)

    # inline_tree: a valid tree with cyclic parents (main.f inlines g, h).
    nb, o = names(["main.f", "main.g", "main.h"])
    pct = b"\0" + pc_values(1)
    write("inline_tree", "valid-cyclic-parents",
          elf(table([(o[0], 1, 0)], nb, pct), tree([o[1], o[2]]), 1, 72))
    # 1000 functions whose pc-value tables start at every step of one.
    nb, o = names(["p.f%04d" % i for i in range(1001)])
    pct = b"\0" + pc_values(999)
    fs = [(o[1 + k], 1 + 2 * k, 0) for k in range(1000)]
    write("inline_tree", "overlapping-pcvalues",
          elf(table(fs, nb, pct), tree([o[0]] * 1000), 1000, 72))
    # 500 functions sharing one tree naming 500 distinct functions.
    lst = ["p.f%04d" % i for i in range(1000)]
    nb, o = names(lst)
    pct = b"\0" + pc_values(499)
    fs = [(o[500 + k], 1, 0) for k in range(500)]
    write("inline_tree", "shared-500-tree",
          elf(table(fs, nb, pct), tree(o[:500]), 500, 72))
    # One tree claiming 2^20 entries.
    nb, o = names(["main.f", "main.g"])
    pct = b"\0\x82\x80\x80\x01\x01\0"
    write("inline_tree", "tree-2pow20",
          elf(table([(o[0], 1, 0)], nb, pct), tree([o[1]] * 4), 1, 72))


if __name__ == "__main__":
    main()
