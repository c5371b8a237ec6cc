#!/usr/bin/env python3
"""Parse-error fidelity against promtool 2.42, run from the repository root:

    python3 bench/parse_error_survey.py [SEED] [TSDBCTL] [UPSTREAM_DIR] [-v]

Mutates ~400 of the upstream PromQL test expressions (truncates one, drops a token, or repeats a
token, chosen by SEED), writes them as recording rules, runs `promtool check rules` and
`tsdbctl check rules` on the file, and counts the rules whose parse error is word for word the
same, and those whose position (`line:col`) is. -v lists the differences."""
import re,random,json,glob,subprocess,sys,os
seed=int(sys.argv[1]) if len(sys.argv)>1 else 7
tsdbctl=sys.argv[2] if len(sys.argv)>2 else 'target/release/tsdbctl'
upstream=sys.argv[3] if len(sys.argv)>3 else '../shared/promql-tests/upstream'
random.seed(seed)
exprs=[]
for f in sorted(glob.glob(upstream+'/*.test')):
    for line in open(f):
        m=re.match(r'\s*eval(?:_fail|_ordered|_warn|_info)?\s+(?:instant|range)\s+(?:from \S+ to \S+ step \S+|at \S+)\s+(.*)$',line)
        if m: exprs.append(m.group(1).strip())
random.shuffle(exprs)
tokre=re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[A-Za-z_:][\w:]*|\d[\w.]*|==|!=|=~|!~|>=|<=|\S')
out=[]
for e in exprs[:400]:
    toks=list(tokre.finditer(e))
    if len(toks)<3: continue
    k=random.randint(1,len(toks)-1)
    kind=random.choice(['trunc','drop','dup'])
    if kind=='trunc': s=e[:toks[k].start()]
    elif kind=='drop': s=e[:toks[k].start()]+e[toks[k].end():]
    else: s=e[:toks[k].end()]+' '+toks[k].group()+e[toks[k].end():]
    if s.strip(): out.append(s)
t="groups:\n  - name: g\n    rules:\n"
for i,q in enumerate(out):
    t+=f"      - record: r{i}\n        expr: {json.dumps(q)}\n"
path=f'/tmp/parse-survey-{seed}.yml'
open(path,'w').write(t)
def run(b):
    r=subprocess.run([b,'check','rules',path],capture_output=True,text=True)
    d={}
    for l in (r.stdout+r.stderr).splitlines():
        m=re.match(r'.*?: \d+:\d+: group "g", rule (\d+), "r\d+": could not parse expression: (.*)',l)
        if m: d[int(m.group(1))]=m.group(2)
    return d
p=run('promtool'); o=run(tsdbctl)
keys=sorted(set(p)|set(o))
same=sum(1 for k in keys if p.get(k)==o.get(k))
pos=sum(1 for k in keys if p.get(k,'').split(' parse error')[0]==o.get(k,'').split(' parse error')[0])
print(f'seed {seed}: {len(out)} expressions, promtool rejects {len(p)}, tsdbctl rejects {len(o)}; identical message {same}, identical position {pos}')
if '-v' in sys.argv:
    for k in keys:
        if p.get(k)!=o.get(k): print(out[k-1]); print('  promtool',p.get(k)); print('  tsdbctl ',o.get(k))
