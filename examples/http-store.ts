/**
 * A JSON document store over HTTP: GET, PUT and DELETE of `/docs/<name>` (nested names such as
 * `/docs/users/alice` are files in subdirectories) under one data directory.
 *
 * Concurrent requests on one document are coordinated by the Client's locks: a PUT replaces the file
 * atomically (and durably), so a GET sees the previous or the new document, never a mix. The Client is
 * confined to the data directory, so a name that leads outside it (`/docs/..%2F..%2Fetc%2Fpasswd`, or
 * through a symbolic link) is refused with 400 before any file is touched.
 *
 * Run: PORT=8080 DATA_DIR=/tmp/docs npx tsx examples/http-store.ts
 *   curl -X PUT --data '{"name":"Alice"}' http://127.0.0.1:8080/docs/users/alice
 *   curl http://127.0.0.1:8080/docs/users/alice
 *   curl -X DELETE http://127.0.0.1:8080/docs/users/alice
 *
 * PORT defaults to 0 (a free port); DATA_DIR to a fresh temp directory, removed when the server stops.
 */
import {
  FileSystem,
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeFileSystem, NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Config, Console, Effect, Layer, Option, ParseResult, Schema } from "effect"
import { Client, LockManager, PersistenceError } from "effect-persistence"
import { createServer } from "node:http"
import * as path from "node:path"

/** A document is a JSON object; its values are free. */
const Document = Schema.Record({ key: Schema.String, value: Schema.Unknown })

const reply = (status: number, error: string) => Effect.succeed(HttpServerResponse.unsafeJson({ error }, { status }))

/**
 * The store's error contract. Messages name no server path: the data directory is not the caller's business.
 * A refused name or a body that is not a JSON object is the caller's mistake (400), a missing document 404, a
 * name that collides with a directory (or needs a directory where a document is) 409, anything else 500.
 */
const failure = (
  error:
    | Client.WriteError
    | PersistenceError.DecodeError
    | HttpServerError.RequestError
    | ParseResult.ParseError
) => {
  switch (error._tag) {
    case "InvalidPathError":
      return reply(400, `invalid document name (${error.reason})`)
    case "DecodeError":
    case "RequestError":
    case "ParseError":
      return reply(400, "the body must be a JSON object")
    case "FileSystemError":
      if (error.reason === "NotFound") return reply(404, "not found")
      if (error.reason === "IsADirectory" || error.reason === "NotADirectory" || error.reason === "AlreadyExists") {
        return reply(409, "the name collides with a directory of documents")
      }
  }
  return Effect.zipRight(Effect.logError(error), reply(500, "internal error"))
}

const makeRouter = (dataDir: string) => {
  // The router has already percent-decoded the wildcard: `..%2F` arrives as `../`, and the Client's
  // confinement refuses whatever normalises to a path outside `dataDir` (or to `dataDir` itself).
  const documentPath = HttpRouter.params.pipe(Effect.map((params) => `${dataDir}/${params["*"] ?? ""}`))

  return HttpRouter.empty.pipe(
    HttpRouter.get(
      "/docs/*",
      Effect.gen(function*() {
        const client = yield* Client.Client
        const document = yield* client.readJson(yield* documentPath, Document)
        return HttpServerResponse.unsafeJson(document)
      }).pipe(
        // A stored file that does not decode is the server's problem, not the caller's.
        Effect.catchTag(
          "DecodeError",
          (error) => Effect.zipRight(Effect.logError(error), reply(500, "internal error"))
        ),
        Effect.catchAll(failure)
      )
    ),
    HttpRouter.put(
      "/docs/*",
      Effect.gen(function*() {
        const client = yield* Client.Client
        const file = yield* documentPath
        const document = yield* HttpServerRequest.schemaBodyJson(Document)
        yield* client.writeJson(file, Document, document)
        return HttpServerResponse.empty({ status: 204 })
      }).pipe(Effect.catchAll(failure))
    ),
    HttpRouter.del(
      "/docs/*",
      Effect.gen(function*() {
        const client = yield* Client.Client
        yield* client.delete(yield* documentPath)
        return HttpServerResponse.empty({ status: 204 })
      }).pipe(Effect.catchAll(failure))
    )
  )
}

/** The data directory: DATA_DIR (created if missing) or a temp directory removed when the server stops. */
const dataDirectory = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const configured = yield* Config.option(Config.string("DATA_DIR"))
  if (Option.isNone(configured)) return yield* fs.makeTempDirectoryScoped({ prefix: "http-store-" })
  const dir = path.resolve(configured.value)
  yield* fs.makeDirectory(dir, { recursive: true })
  return dir
})

const ServerLive = Layer.unwrapScoped(Effect.gen(function*() {
  // Not `Config.port`: it refuses 0, which asks the system for a free port.
  const port = yield* Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0..65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(0)
  )
  const dataDir = yield* dataDirectory

  const PersistenceLive = Client.layer({ durable: true, root: dataDir }).pipe(
    Layer.provide(Layer.merge(LockManager.layer, NodeFileSystem.layer))
  )
  const announce = Layer.effectDiscard(HttpServer.addressWith((address) =>
    address._tag === "TcpAddress" ?
      Console.log(`listening on http://127.0.0.1:${address.port} (data: ${dataDir})`) :
      Console.log(`listening on ${address.path} (data: ${dataDir})`)
  ))

  // Announce once the routes are attached, so that a client reacting to the line is served.
  return announce.pipe(
    Layer.provide(HttpServer.serve(makeRouter(dataDir))),
    Layer.provide(PersistenceLive),
    Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
  )
}))

ServerLive.pipe(
  Layer.provide(NodeFileSystem.layer),
  Layer.launch,
  NodeRuntime.runMain
)
