#!/usr/bin/env python3
"""Checks that no two modules of the library import each other, directly or
through others: every `use crate::...`, `use super::...` and `use self::...`
is an edge to the module that defines what it names (a folder's re-exports
count as the folder), and a cycle fails the check. A parent re-exporting its
children (`mod x; pub use x::Y;`) is structure, not an import, and inline
`mod private { use super::*; }` blocks are skipped.

Run from the repository's root: python3 scripts/module-cycles.py
"""
import re,glob,sys
files=[f for f in glob.glob('src/**/*.rs',recursive=True) if '/bin/' not in f]
def modpath(f):
    parts=f[4:-3].split('/')
    if parts[-1] in ('mod','lib'): parts=parts[:-1]
    return ['crate']+[x for x in parts if x]
mods={'::'.join(modpath(f)):f for f in files}
def resolve(src, path):
    parts=path.split('::')
    if parts[0]=='crate': full=parts
    elif parts[0]=='super': full=src[:-1]+parts[1:]
    elif parts[0]=='self': full=src+parts[1:]
    else: full=src+parts
    for i in range(len(full),0,-1):
        mp='::'.join(full[:i])
        if mp in mods: return mp
    return None
edges={}
for f in files:
    s=open(f).read(); src=modpath(f); me='::'.join(src)
    s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*','',s,flags=re.S)
    deps=set()
    for m in re.finditer(r'^\s*(?:pub(?:\([\w:]+\))? )?use ((?:crate|super|self|\w+)(?:::\w+)*)(?:::\{([^;]*)\})?(?:::\*)?;',s,re.M):
        base=m.group(1); items=m.group(2)
        if base.split('::')[0] not in ('crate','super','self') and ('::'.join(src+[base.split('::')[0]]) not in mods): continue
        cands=[base]
        if items:
            for it in re.split(r',\s*',items):
                it=it.strip().split(' as ')[0].strip()
                if it and it!='self': cands.append(base+'::'+it.split('::')[0].strip('{} '))
        for c in cands:
            if c in ('super','super::*') : continue
            r=resolve(src,c)
            if r and r!=me and not r.startswith(me+'::'): deps.add(r)
    edges[me]=deps
sys.setrecursionlimit(10000)
index={};low={};st=[];on=set();res=[];i=[0]
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in index: sc(w); low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v: break
        if len(comp)>1: res.append(comp)
for v in list(edges):
    if v not in index: sc(v)
for comp in res:
    print("import cycle between modules: " + ", ".join(sorted(comp)))
    for v in sorted(comp):
        for w in sorted(edges[v]):
            if w in comp:
                print(f"  {v} imports {w}")
if res:
    sys.exit(1)
print(f"no import cycle between the {len(edges)} modules of src/ (the program aside)")
