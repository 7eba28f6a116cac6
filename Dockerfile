# The pipeline image for Kubeflow / Vertex AI Pipelines and for the Dataflow workers:
# the TFX 1.16 base image (Python 3.10, TFX, Beam) plus this package and its pinned set.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# Dataflow runs custom containers through Beam's boot binary; the Vertex components set their own
# command (python -m ...kubeflow_v2_run_executor) in the compiled spec, so one image serves both.
COPY --from=apache/beam_python3.10_sdk:2.59.0 /opt/apache/beam /opt/apache/beam

WORKDIR /retailrec
COPY requirements.lock setup.py ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .

# TFRS, TFMA and TFX 1.16 need Keras 2, in the components and in the Beam workers alike.
ENV TF_USE_LEGACY_KERAS=1
ENTRYPOINT ["/opt/apache/beam/boot"]
