// A Node program that knows nothing of replayproxy: GET a URL, print the body.
// node node_client.js agent|fetch|absolute URL
'use strict';
const http = require('http');
const https = require('https');

async function main(mode, url) {
  if (mode === 'fetch') {
    const response = await fetch(url);
    return Buffer.from(await response.arrayBuffer());
  }
  // as SDKs (Stripe, AWS, OpenAI) do: their own keep-alive agent, not the global one;
  // "absolute": as axios does with HTTP_PROXY, a plain request to the proxy itself
  const mod = url.startsWith('https:') ? https : http;
  const agent = new mod.Agent({ keepAlive: true });
  let target = url;
  let options = { agent };
  if (mode === 'absolute') {
    const proxy = new URL(process.env.HTTP_PROXY);
    target = proxy.href;
    options = { agent: new http.Agent(), path: url, headers: { host: new URL(url).host } };
  }
  try {
    return await new Promise((resolve, reject) => {
      (mode === 'absolute' ? http : mod).get(target, options, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      }).on('error', reject);
    });
  } finally {
    agent.destroy();
  }
}

main(process.argv[2], process.argv[3]).then(
  (body) => process.stdout.write(body),
  (err) => { console.error(err); process.exit(1); },
);
