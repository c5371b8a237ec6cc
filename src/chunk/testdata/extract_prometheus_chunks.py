# Pulls the XOR chunks out of the block promtool wrote (chunks/000001) and pairs them with the
# samples gen_prometheus_chunks.py intended (Go parses "NaN" as 0x7ff8000000000001).
import glob
exp = {}
for line in open('expected.txt'):
    name, *samples = line.split()
    exp[name] = [s.replace('7ff8000000000000', '7ff8000000000001') for s in samples]
names = list(exp)
f = glob.glob('out/*/chunks/000001')[0]
b = open(f,'rb').read()
assert b[:4] == bytes.fromhex('85BD40DD') and b[4] == 1
pos = 8; chunks = []
while pos < len(b):
    n = 0; shift = 0
    while True:
        c = b[pos]; pos += 1; n |= (c & 0x7f) << shift; shift += 7
        if c < 0x80: break
    enc = b[pos]; pos += 1
    assert enc == 1
    chunks.append(b[pos:pos+n]); pos += n + 4
assert len(chunks) == len(names)
with open('prometheus-v2.42-xor-chunks.txt', 'w') as out:
    out.write("# XOR chunks written by Prometheus 2.42 (promtool tsdb create-blocks-from openmetrics).\n")
    out.write("# One chunk per line: series<TAB>chunk data hex<TAB>samples as ms:value-bits-hex.\n")
    for name, c in zip(names, chunks):
        out.write(f"{name}\t{c.hex()}\t{','.join(exp[name])}\n")
for c in chunks: print(len(c), c[:2].hex(), c[-3:].hex())
