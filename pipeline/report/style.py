"""The report's stylesheet: readable from a 360 px phone to a wide laptop, no web fonts."""

CSS = """
:root{--fg:#1d2430;--muted:#5b6577;--line:#dde2ea;--bg:#f6f7f9;--card:#fff;--accent:#2f6fb3;
--good:#2e7d32;--bad:#c62828}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#1f2d3d;color:#fff;padding:16px max(16px,calc((100% - 1100px)/2))}
header h1{margin:0 0 8px;font-size:1.35rem;overflow-wrap:anywhere}
nav{display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:#cfe3ff;text-decoration:none;font-size:.9rem}
nav a:hover{text-decoration:underline}
main{max-width:1100px;margin:0 auto;padding:8px 16px 24px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:4px 16px 16px;margin:16px 0}
h2{font-size:1.15rem;margin:14px 0 10px}
h3{font-size:1rem;margin:16px 0 6px}
p{margin:6px 0}
.muted,small,figcaption{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:var(--bg)}
.card span{display:block;font-size:.8rem;color:var(--muted);text-transform:uppercase;
letter-spacing:.03em}
.card strong{display:block;font-size:1.45rem;line-height:1.25;overflow-wrap:anywhere}
.card small{display:block;font-size:.8rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,320px),1fr));gap:14px;
align-items:start}
figure{margin:8px 0;min-width:0}
figure img,img{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:.85rem;text-align:center;margin-top:4px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:6px 0 10px}
table{border-collapse:collapse;width:100%;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right}
tbody tr:hover{background:#f0f4fa}
.pass{color:var(--good);font-weight:600}.fail{color:var(--bad);font-weight:600}
.warning{border:1px solid var(--bad);border-left:6px solid var(--bad);border-radius:8px;
padding:8px 12px;margin:0 0 12px;overflow-wrap:anywhere}
.up{color:var(--good)}.down{color:var(--bad)}
.bar{display:inline-block;min-width:7em;padding:0 4px;text-align:right;
background:linear-gradient(90deg,#cfe0f5 var(--w),transparent var(--w))}
code{font:.85rem ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);
padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--bg);padding:8px;
border-radius:6px}
details{margin:6px 0 10px}summary{cursor:pointer;color:var(--accent)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;overflow-wrap:anywhere}
footer{max-width:1100px;margin:0 auto;padding:0 16px 24px;color:var(--muted);font-size:.8rem}
@media (max-width:600px){body{font-size:14px}section{padding:2px 10px 12px}
main{padding:4px 8px 16px}th,td{padding:4px 6px}dl.kv{grid-template-columns:1fr}
dl.kv dt{margin-top:4px}}
@media print{header{background:none;color:#000}nav{display:none}section{break-inside:avoid}}
"""
