/** The exact English stopword list of protocol §4.10 (TopGun's BM25 tokenizer). */
export const STOPWORDS: ReadonlySet<string> = new Set(
  (
    "a an the i me my myself we our ours ourselves you your yours yourself yourselves " +
    "he him his himself she her hers herself it its itself they them their theirs themselves what which who whom " +
    "this that these those am is are was were be been being have has had having do does did doing will would shall " +
    "should can could may might must ought about above across after against along among around at before behind " +
    "below beneath beside between beyond by down during except for from in inside into near of off on onto out " +
    "outside over past since through throughout to toward towards under underneath until up upon with within " +
    "without and but or nor so yet both either neither not only as if than when while although because unless " +
    "whether here there where how why all each every any some no none more most other such own same too very just " +
    "also now then again ever once few many much several s t d ll m ve re"
  ).split(" ")
)
