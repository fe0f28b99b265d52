# DeepFake-Detect dashboard: docker build -t deepfake-detect . && docker run -p 8501:8501 deepfake-detect
# Limits (see README "Hosting"): e.g. docker run -e DEEPFAKE_MAX_ANALYSES=2 -e DEEPFAKE_MAX_FRAME=1920x1080 ...
FROM python:3.12-slim
# opencv-python-headless needs neither libgl1 nor libglib2.0-0; no curl either (the health check uses Python)
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 MALLOC_ARENA_MAX=2
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY --chown=app:app . .
USER app
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status != 200)"]
CMD ["streamlit", "run", "streamlit_app.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
