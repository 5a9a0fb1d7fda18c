"""Evaluation metrics for MeDiM. Submodules are imported on use (some pull in scikit-learn, torchmetrics, Java):

- :mod:`medim.metrics.text` — corpus-level BLEU/METEOR/ROUGE-L/CIDEr (pycocoevalcap) and sentence-level NLTK BLEU;
- :mod:`medim.metrics.clinical` — clinical efficacy (precision/recall/F1 of labeler findings);
- :mod:`medim.metrics.labeler` — rule-based finding labeler for chest X-ray and pathology reports;
- :mod:`medim.metrics.images` — FID/IS with a local Inception-v3, Fréchet distance on any feature network;
- :mod:`medim.metrics.judge` — the consistency judge (small CNN trained on the synthetic corpus);
- :mod:`medim.metrics.consistency` — image–report consistency with the judge, and a VLM judge interface;
- :mod:`medim.metrics.tables`, :mod:`medim.metrics.figures` — the evaluation report's tables and plots.
"""
