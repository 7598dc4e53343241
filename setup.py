from setuptools import find_packages, setup

setup(
    name="argos_wm",
    version="0.1.0",
    description="A Hub-native latent world model: frozen DINOv2 features, a block-causal space-time transformer "
    "trained with diffusion and shortcut forcing, rollouts and goal-conditioned MPC planning.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "transformers>=5.20",
        "diffusers>=0.36",
        "accelerate>=1.10",
        "datasets>=4.0",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "einops>=0.8",
        "av>=14",
        "pyarrow>=15",
        "pandas>=2",
        "numpy>=1.26",
        "pyyaml>=6",
        "tqdm>=4.66",
        "tensorboard>=2.15",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2"],
        "sim": ["gym-pusht>=0.1.5", "gymnasium>=1.0", "pymunk>=6", "shapely>=2"],
        "space": ["gradio>=5", "gradio_client>=1"],
    },
)
