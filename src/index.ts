/**
 * effect-persistence: filesystem coordination for Effect applications.
 *
 * @since 0.1.0
 */

/**
 * Hierarchical read/write path locks with FIFO fairness.
 *
 * @since 0.1.0
 */
export * as LockManager from "./LockManager.js"

/**
 * Locked, atomic and optionally durable file operations.
 *
 * @since 0.1.0
 */
export * as Client from "./Client.js"

/**
 * The typed errors of the library.
 *
 * @since 0.1.0
 */
export * as PersistenceError from "./PersistenceError.js"

/**
 * A lock service shared by several processes, over @effect/rpc.
 *
 * @since 0.1.0
 */
export * as LockServer from "./LockServer.js"
