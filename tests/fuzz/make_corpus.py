#!/usr/bin/env python3
"""Write the seed corpora in tests/fuzz/corpus/<target>/ from real inputs:
the repository's configs, the first lines of the sparse test data, the first
images of Fashion-MNIST, a CSV like the unit tests', and a trace.bin as
paramd writes it. Run from the repository root; the output is in git.
Data targets take one option byte first (see fuzz_data.c)."""
import gzip, os, shutil, struct

root = 'tests/fuzz/corpus'


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), 'wb') as f:
        f.write(data)


for src in ['conf/reference.yaml', 'tests/conf/softmax.yaml', 'tests/conf/sparse.yaml',
            'tests/data/config/good.yaml', 'tests/data/config/bad-value.yaml']:
    put('config', os.path.basename(src), open(src, 'rb').read())
put('config', 'with-set.yaml', b'#set training.mode=async\n#set model.hidden=[8,4]\n'
    b'data: {format: csv, header: true}\nmodel: {type: mlp}\n')

svm = open('tests/data/sparse-test.svm', 'rb').read().split(b'\n')
put('libsvm', 'logreg', bytes([0x02]) + b'\n'.join(svm[:6]) + b'\n')
put('libsvm', 'svm-std-valid', bytes([0x2b]) + b'\n'.join(svm[:8]) + b'\n')
put('libsvm', 'softmax-fixed', bytes([0x40]) + b'0 1:0.5 3:1\n2 2:1e-3 16:-4\n# note\n1 5:7\n')

csv = b'f1, "label" ,f2\n1,0,2\r\n3, 1 ,4\n\n  \n5,2,6\n'
put('csv', 'header-softmax', bytes([0x04]) + csv)
put('csv', 'plain-linreg', bytes([0x19]) + b'0.5,1,2\n-1.5,3,4e2\n2,5,6\n7,1,1\n')
put('csv', 'sharded-logreg', bytes([0xa2]) + b'1,0.1,0.2\n0,0.3,0.4\n1,0.5,0.6\n0,0.7,0.8\n')

fm = '/usr/share/datasets/fashion-mnist/'
img = gzip.open(fm + 't10k-images-idx3-ubyte.gz').read()
lab = gzip.open(fm + 't10k-labels-idx1-ubyte.gz').read()
for n, opt in [(3, 0x10), (5, 0x88)]:
    images = struct.pack('>IIII', 0x803, n, 28, 28) + img[16:16 + n * 784]
    labels = struct.pack('>II', 0x801, n) + lab[8:8 + n]
    put('idx', 'fmnist-%d' % n, bytes([opt]) + struct.pack('<I', len(images)) + images + labels)
images = gzip.compress(struct.pack('>IIII', 0x803, 2, 2, 2) + bytes(range(8)), mtime=0)
labels = struct.pack('>II', 0x801, 2) + bytes([1, 0])
put('idx', 'gzip-2x2', bytes([0x00]) + struct.pack('<I', len(images)) + images + labels)

recs = [(0, 1, 0, 0, 1), (1, 1, 0, 0, 2), (0, 2, 1, 0, -1), (1, 1, 1, 2, 3), (0, 3, 2, 3, -1)]
body = b''.join(struct.pack('<IIqqq', *r) for r in recs)
put('trace', 'two-workers', b'PDTRACE1' + struct.pack('<IIQ', 1, 2, len(recs)) + body)
put('trace', 'empty', b'PDTRACE1' + struct.pack('<IIQ', 1, 1, 0))
