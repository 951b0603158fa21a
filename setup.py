"""Packaging for deapnos and its built-in plugins (installed as ``deapnos_plugins``)."""
from setuptools import find_packages, setup

setup(
    name="deapnos",
    version="0.1.0",
    description="Neural Optimizer Search with DEAP and PyTorch (Morgan & Hougen, arXiv 2404.06679)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["deapnos", "deapnos.*"]) + ["deapnos_plugins"],
    package_dir={"deapnos_plugins": "plugins"},
    package_data={"deapnos": ["configs/*.toml"]},
    install_requires=[
        "deap>=1.4",
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "timm>=0.9",
        "numpy",
        "pluggy>=1.3",
        "scoop>=0.7.2",
        "scikit-learn>=1.2",
        "matplotlib>=3.6",
        "tqdm>=4.60",
        "tomli-w>=1.0",            # writes the run folder's config.toml (tomllib only reads)
    ],
    # distributed: the example Dask backend plugin's test; ruff, mypy: .ci/run checks the tree with them
    extras_require={"test": ["pytest>=7", "pytest-timeout", "pytest-xdist", "distributed", "ruff", "mypy"]},
    entry_points={
        "console_scripts": ["deapnos = deapnos.cli:main"],
        "deapnos": [
            "sphere = deapnos_plugins.sphere",
            "digits = deapnos_plugins.digits",
            "digits_hard = deapnos_plugins.digits_hard",
            "stdlib_lm = deapnos_plugins.stdlib_lm",
            "ill_conditioned = deapnos_plugins.ill_conditioned",
            "tabular = deapnos_plugins.tabular",
            "cifar10 = deapnos_plugins.cifar10",
            "vision_tasks = deapnos_plugins.vision_tasks",
            "ptb = deapnos_plugins.ptb",
        ],
    },
)
