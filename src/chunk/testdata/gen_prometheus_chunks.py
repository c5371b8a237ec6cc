# Generates the OpenMetrics input for prometheus-v2.42-xor-chunks.txt. Regenerate with:
#   python3 gen_prometheus_chunks.py && promtool tsdb create-blocks-from openmetrics data.om out
#   python3 extract_prometheus_chunks.py   (promtool 2.42.0, Debian package)
import random, struct, math
random.seed(42)
T0 = 1700006400 // 7200 * 7200 + 7200  # aligned block start, ms later
T0ms = T0*1000
series = {}
# A: counter
t = T0ms + 5; v = 1000.0; s=[]
for i in range(100):
    s.append((t, v)); t += 15000 + random.randint(-3,3); v += random.randint(0,50)
series['a_counter_total{job="x"}'] = s
# B: gauge
t = T0ms + 7; s=[]
for i in range(100):
    s.append((t, round(random.uniform(0,100), random.choice([2,3])))); t += 15000 + random.randint(-3,3)
series['b_gauge{job="x"}'] = s
# C: dod buckets
deltas = [1000,1000,1000,1000+8192,1000,1000+8193,1000,1000-999,1000,1000+65536,1000,1000+65537,1000,1000+524288,1000,1000+524289,1000,2,1000,1000-8191+8191,1000]
t = T0ms + 11; s=[(t,1.0)]
for d in deltas:
    t += d; s.append((t, 1.0))
# add more irregular
for i in range(20):
    t += random.choice([1, 10, 100, 999, 15000, 30001, 200000]); s.append((t, float(i)))
series['c_dod{job="x"}'] = s
# D: value edge cases
vals = [0.0, 0.0, 1.0, 1.0000000000000002, 1.0, -0.0, float('inf'), float('-inf'), float('nan'), float('nan'), 1e300, 5e-324, -1.5, 2.5, 3.5, 3.25, 1234567.891, 1234567.892, 0.1, 0.2, 0.30000000000000004, 42.0, 42.0, 42.0, 43.0, 1e-10, 2**53, 2**53+2, -2**63, 123.456, 123.457, 123.458]
t = T0ms + 13; s=[]
for v in vals:
    s.append((t, v)); t += 15000
series['d_values{job="x"}'] = s
series['e_single{job="x"}'] = [(T0ms + 17, 3.14)]
series['f_two{job="x"}'] = [(T0ms + 19, 3.14), (T0ms + 20019, 2.72)]
series['g_equal_then{job="x"}'] = [(T0ms + i*15000, 5.0) for i in range(5)] + [(T0ms + 5*15000, 6.0), (T0ms+6*15000, 7.0)]
def fmt_ts(m):
    s = f"{m//1000}.{m%1000:03d}5"
    assert int(float(s)*1000) == m, (s, m)
    return s
def fmt_v(v):
    if math.isnan(v): return "NaN"
    if math.isinf(v): return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))
with open('data.om','w') as f:
    for name, s in series.items():
        fam = name.split('{')[0]
        f.write(f"# TYPE {fam} gauge\n")
        for t, v in s:
            f.write(f"{name} {fmt_v(v)} {fmt_ts(t)}\n")
    f.write("# EOF\n")
with open('expected.txt','w') as f:
    for name, s in series.items():
        f.write(name + " " + " ".join(f"{t}:{struct.unpack('>Q', struct.pack('>d', float(v)))[0]:016x}" for t,v in s) + "\n")
