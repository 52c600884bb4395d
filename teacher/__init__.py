"""The teacher side of distillation: the only code in tinylm that imports torch and transformers.

    load.py        load a Hugging Face causal LM (hub id or local folder), pick device and dtype
    vocab.py       its tokens as bytes, and its tokenizer as a tinylm Tokenizer when possible
    sources.py     the corpus: texts to read, prompts to answer, free generations
    targets.py     run the teacher over the corpus and write its top-k predictions to shards
    tiny_gemma.py  train a tiny Gemma-3-architecture teacher locally (the offline first run)

Install with `pip install -e ".[teacher]"`. `tinylm distill` (tinylm/distillation/stages.py)
drives it.
"""

import os

# PyTorch's CPU threads spin while they wait for each other. On a machine whose cores are
# busy with other work (a shared 2-core box), a spinning thread waits for one that is not
# running, and a small model's forward pass gets 10-100x slower. Passive waiting avoids that;
# it must be set before torch starts its OpenMP runtime, so here, before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
