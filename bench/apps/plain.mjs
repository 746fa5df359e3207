/**
 * The plain `(req, res)` bench app. Routes:
 *   GET  /       "hello world\n" (text/plain, 12 bytes)
 *   POST /echo   the JSON body back (application/json)
 *   GET  /1mb    1 MiB of bytes (application/octet-stream)
 *   GET  /cpu    "done\n" after 5 ms of busy CPU
 */
const HELLO = Buffer.from('hello world\n');
const MEGABYTE = Buffer.alloc(1024 * 1024, 'x');
const CPU_MS = 5;

function spin(ms) {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
}

export default function app(req, res) {
  if (req.method === 'POST' && req.url === '/echo') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
    return;
  }
  if (req.url === '/1mb') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': MEGABYTE.length });
    res.end(MEGABYTE);
    return;
  }
  if (req.url === '/cpu') {
    spin(CPU_MS);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 });
    res.end('done\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': HELLO.length });
  res.end(HELLO);
}
