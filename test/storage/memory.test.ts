import { Storage } from "../../src/layers/Storage.js"
import { storageConformance } from "./conformance.js"

storageConformance("memory", async () => ({ layer: Storage.layerMemory }), { durable: false })
