"""The registered classifiers' names, written out so that ``darknb models`` answers without
importing torch (``tests/test_cli.py`` checks this list against the registry,
:func:`darknb.models.classifiers.list_models`)."""

MODEL_NAMES: dict[str, str] = {
    "r2plus1d_34_bert": "R(2+1)D-34 + BERT5, the paper's clip; IG65M weights from a local file "
                        "(baseline_pretrained)",
    "r2plus1d_bert": "R(2+1)D-18 + BERT5 at the paper's clip, from scratch",
    "r2plus1d_bert_tiny": "R(2+1)D-18 + BERT5 at CPU size, from scratch",
    "two_stream_bert": "DarkLight's raw + gamma two-stream on the paper's ViT-B/16 + BERT",
    "two_stream_bert_tiny": "DarkLight's raw + gamma two-stream on vit_bert_tiny's backbone",
    "two_stream_r2plus1d_34_bert": "DarkLight as its code builds it (raw + gamma, one shared "
                                   "R(2+1)D-34)",
    "vit_bert": "the paper preset: ViT-B/16 at 112 px, 64 frames, BERT head",
    "vit_bert_tiny": "the CPU preset: a tiny ViT + the same BERT head (the demo)",
}
