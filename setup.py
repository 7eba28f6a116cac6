"""retailrec: a TFX pipeline that learns a two-tower retrieval recommender from a shop's click stream."""

from setuptools import find_packages, setup

setup(
    name="retailrec",
    version="0.1.0",
    description="TFX two-tower retrieval recommender for RetailRocket-format e-commerce logs",
    python_requires=">=3.9,<3.11",
    packages=find_packages(
        include=["pipeline*", "components*", "modules*", "data*", "reporting*", "retailrec*"]
    ),
    package_data={"": ["*.pbtxt", "*.json"]},
    include_package_data=True,
    # The pinned, tested set lives in requirements.lock (installed by `make setup`); these are the
    # direct dependencies for users who install the package into an environment of their own.
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.*",
        "tensorflow-recommenders==0.7.7",
        "scann==1.3.2",
        "tensorflow-transform==1.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-model-analysis==0.47.1",
        "apache-beam[gcp]==2.59.0",
        "dill",
        "duckdb",
        "numpy<2",
        "pandas",
        "pyarrow",
        "scipy",
    ],
    entry_points={"console_scripts": ["retailrec=pipeline.cli:main"]},
)
