from setuptools import find_packages, setup

setup(
    name="caliban",
    version="1.0.0.dev0",
    description="Run research code in Docker, locally or as training jobs on Google Cloud.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["caliban", "caliban.*"]),
    install_requires=[
        # No absl-py: flags are argparse (Caliban 0.4.2's command lines, `--`
        # pass-through), warnings one plain line (caliban.errors.warn).
        "docker>=7.0,<8",
        "google-api-python-client>=2.100,<3",
        "google-auth>=2.20,<3",
        # google-auth's transport for API calls: unlike httplib2 it never re-sends a
        # create whose connection dropped (which would submit a job twice).
        "requests>=2.28,<3",
        "pyyaml>=6.0,<7",
        # Progress bars for builds, pushes and sweeps: small, pure Python, no deps.
        "tqdm>=4.60,<5",
    ],
    extras_require={
        "test": ["pytest>=7", "pexpect>=4.8", "hypothesis>=6"],
    },
    entry_points={
        "console_scripts": [
            "caliban=caliban.main:main",
            "expansion=caliban.commands.expansion:main",
        ]
    },
    license="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3"],
)
