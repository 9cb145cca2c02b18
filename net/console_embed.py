#!/usr/bin/env python3
"""Writes a C file defining `const char NAME[]` holding the bytes of a file, so
the console's page is compiled into the library (no files at run time)."""
import sys

src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
with open(dst, 'w') as f:
    f.write('/* Generated from %s by console_embed.py: do not edit. */\n' % src.split('/')[-1])
    f.write('extern const char %s[];\nconst char %s[] = {\n' % (name, name))
    for i in range(0, len(data), 16):
        f.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    f.write('    0x00,\n};\n')
