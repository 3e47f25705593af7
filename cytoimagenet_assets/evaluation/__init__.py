"""Transfer evaluation (methods: "Evaluation (Transfer Tasks)"); no Dagster here.

``knn.py`` exact, vectorized k-NN; ``protocols.py`` BBBC021 NSC/NSCB, COOS-7 and CyCLoPs with
their readers; ``features.py`` backbones and the four feature-extraction methods.
"""
