"""The status page: one HTML document, inline CSS and JS, no external assets.

The script polls `/status.json` every 2 s and draws the bandwidth of the last
minutes (in and out) as two polylines in an inline SVG; the drawn state is
also written to data- attributes (`data-samples`, `data-peak-in`...) so a
headless browser test can check the graph came from live data.
"""

STATUS_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GlobalNet node</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:60em}
h1{font-size:1.3em} h2{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse} td,th{padding:.15em .8em .15em 0;text-align:left}
code{font-size:.95em} .muted{color:#777}
svg{border:1px solid #ccc;background:#fafafa}
.in{stroke:#1565c0} .out{stroke:#c62828} .key-in{color:#1565c0} .key-out{color:#c62828}
</style></head><body>
<h1>GlobalNet node <code id="node">...</code></h1>
<table id="summary"></table>
<h2>Bandwidth, last <span id="span">5</span> minutes
 (<span class="key-in">in</span> / <span class="key-out">out</span>, peak <span id="peak">0 B/s</span>)</h2>
<svg id="graph" width="600" height="160" viewBox="0 0 600 160" data-samples="0" data-peak-in="0" data-peak-out="0">
<polyline id="line-in" class="in" fill="none" stroke-width="2" points=""/>
<polyline id="line-out" class="out" fill="none" stroke-width="2" points=""/>
</svg>
<h2>Links</h2><table id="links"></table>
<h2>Circuits</h2><table id="circuits"></table>
<p class="muted">Refreshed every 2 s from <a href="/status.json">/status.json</a>;
Prometheus metrics at <a href="/metrics">/metrics</a>.</p>
<script>
"use strict";
function size(n){const u=["B","KiB","MiB","GiB"];let i=0;while(n>=1024&&i<3){n/=1024;i++}return n.toFixed(i?1:0)+" "+u[i]}
function rows(id,head,items){const t=document.getElementById(id);t.textContent="";
 const h=t.insertRow();head.forEach(x=>{const c=document.createElement("th");c.textContent=x;h.appendChild(c)});
 items.forEach(r=>{const row=t.insertRow();r.forEach(x=>{row.insertCell().textContent=String(x)})});
 if(!items.length){t.insertRow().insertCell().textContent="none"}}
function draw(s){
 const g=document.getElementById("graph"),W=600,H=160,span=s.bandwidth_span||300,pts=s.bandwidth;
 let peak=1;pts.forEach(p=>{peak=Math.max(peak,p.in,p.out)});
 const xy=k=>pts.map(p=>((W*(1-p.ago/span)).toFixed(1))+","+((H-4-(H-8)*p[k]/peak).toFixed(1))).join(" ");
 document.getElementById("line-in").setAttribute("points",xy("in"));
 document.getElementById("line-out").setAttribute("points",xy("out"));
 g.dataset.samples=pts.length;
 g.dataset.peakIn=Math.max(0,...pts.map(p=>p.in));
 g.dataset.peakOut=Math.max(0,...pts.map(p=>p.out));
 document.getElementById("peak").textContent=size(peak)+"/s";
 document.getElementById("span").textContent=Math.round(span/60)}
function show(s){
 document.getElementById("node").textContent=s.node_id;
 const b=s.bootstrap,boot=b.ready?"ready (bootstrapped 100%)":"bootstrapped "+b.percent+"% ("+b.phase+")";
 rows("summary",[],[["role",s.role],["version","gclient "+s.version],["uptime",Math.round(s.uptime)+" s"],
  ["bootstrap",boot],["relays known",s.relays_known],["guards",s.guards.length?s.guards.join(", "):"none"],
  ["relayed",size(s.bytes_relayed)],["traffic",size(s.traffic.in)+" in, "+size(s.traffic.out)+" out"]]);
 rows("links",["peer","age","rtt","streams","in","out"],s.links.map(l=>[l.peer,Math.round(l.age)+" s",
  l.rtt_ms===null?"-":l.rtt_ms+" ms",l.streams,size(l.bytes_in),size(l.bytes_out)]));
 rows("circuits",["id","purpose","hops","state","age"],s.circuits.map(c=>[c.id,c.purpose,c.hops,c.state,Math.round(c.age)+" s"]));
 draw(s)}
async function poll(){try{const r=await fetch("/status.json",{cache:"no-store"});if(r.ok){show(await r.json())}}catch(e){}
 setTimeout(poll,2000)}
poll();
</script></body></html>
"""
