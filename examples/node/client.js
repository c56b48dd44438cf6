#!/usr/bin/env node
// A Node.js client of tfs-gateway. The .proto is loaded at run time with @grpc/proto-loader
// (Debian's protoc has no JavaScript generator).
//
//   node client.js classify --model colors IMAGE...          one JSON response per image
//   node client.js detect   --model shapes IMAGE...
//   node client.js stream   --model colors [--window 4] IMAGE...   one JSON line per frame
//
// Options: --gateway HOST:PORT (default localhost:9000), --top-k K.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO = path.join(__dirname, "..", "..", "protos", "classify.proto");
const definition = protoLoader.loadSync(PROTO, {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const api = grpc.loadPackageDefinition(definition).tfsgateway.v1;

function parse(argv) {
  const options = { gateway: "localhost:9000", model: "colors", topK: 0, window: 0, images: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--gateway") options.gateway = argv[++i];
    else if (arg === "--model") options.model = argv[++i];
    else if (arg === "--top-k") options.topK = Number(argv[++i]);
    else if (arg === "--window") options.window = Number(argv[++i]);
    else options.images.push(arg);
  }
  return options;
}

function deadline(seconds) { return new Date(Date.now() + seconds * 1000); }

async function unary(client, method, options) {
  for (const image of options.images) {
    const request = { model: { name: options.model }, image: fs.readFileSync(image), request_id: image };
    if (method === "Classify") request.top_k = options.topK;
    const response = await new Promise((resolve, reject) =>
      client[method](request, { deadline: deadline(30) }, (error, reply) => (error ? reject(error) : resolve(reply))));
    delete response.timings;
    console.log(JSON.stringify(response));
  }
}

function stream(client, options) {
  return new Promise((resolve, reject) => {
    const call = client.Stream({ deadline: deadline(120) });
    call.on("data", (response) => {
      const kind = response.message;
      const body = response[kind];
      const line = { status: kind, frame_id: body.frame_id };
      if (kind === "result") line.labels = body.results.map((r) => r.classifications.map((c) => c.label));
      else if (kind === "error") line.error = `${body.code}: ${body.message}`;
      console.log(JSON.stringify(line));
    });
    call.on("error", reject);
    call.on("end", resolve);
    const task = { model: { name: options.model }, top_k: options.topK };
    call.write({ options: { tasks: [task], window: options.window } });
    options.images.forEach((image, index) =>
      call.write({ frame: { frame_id: index, image: fs.readFileSync(image), timestamp_us: index * 40000 } }));
    call.end();
  });
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  const options = parse(rest);
  const client = new api.ImageGateway(options.gateway, grpc.credentials.createInsecure());
  try {
    if (command === "classify") await unary(client, "Classify", options);
    else if (command === "detect") await unary(client, "Detect", options);
    else if (command === "stream") await stream(client, options);
    else throw new Error(`unknown command ${command}: classify, detect or stream`);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(`${error.code !== undefined ? grpc.status[error.code] + ": " : ""}${error.details || error.message}`);
  process.exit(1);
});
