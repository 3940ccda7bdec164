// A Node program that knows nothing of replayproxy: GET a URL, print the body.
// node node_client.js agent|fetch URL
'use strict';
const http = require('http');
const https = require('https');

async function main(mode, url) {
  if (mode === 'fetch') {
    const response = await fetch(url);
    return Buffer.from(await response.arrayBuffer());
  }
  // as SDKs (Stripe, AWS, OpenAI) do: their own keep-alive agent, not the global one
  const mod = url.startsWith('https:') ? https : http;
  const agent = new mod.Agent({ keepAlive: true });
  try {
    return await new Promise((resolve, reject) => {
      mod.get(url, { agent }, (res) => {
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
