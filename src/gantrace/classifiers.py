"""The linear classifiers that methods learning from labelled images share (subset
attribution's supervised assigner, open-set attribution's known generators)."""

CLASSIFIERS = ("linear_svm", "logistic")


def linear_classifier(kind, C, random_state):
    """A standardised linear classifier: `linear_svm` or `logistic`, regularised by `C`."""
    # scikit-learn estimators: built in the job that fits them
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "linear_svm":
        model = LinearSVC(C=C, max_iter=5000, random_state=random_state)
    else:
        model = LogisticRegression(C=C, max_iter=2000, random_state=random_state)
    return make_pipeline(StandardScaler(), model)
