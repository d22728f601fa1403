# The one image of the site: web (gunicorn) and worker (celery) run it with different commands.
FROM python:3.11-slim

# Production unless told otherwise: without SECRET_KEY and ALLOWED_HOSTS the image refuses to start.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=0 \
    CAKESITE_VAR_DIR=/app/var MEDIA_ROOT=/app/var/media CAKESITE_MODELS_DIR=/app/var/models
WORKDIR /app
COPY requirements.txt constraints.txt ./
# constraints.txt: every transitive version as CI tested it, not whatever is newest at build time
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY . .
# Production storage (DEBUG=0) writes the manifest the production site reads its static files by.
# The media and models volumes start as a copy of these folders, owner included: the site writes
# uploads under var/media, and the trainer new model versions under var/models, as cakesite.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=build python manage.py collectstatic --noinput \
    && useradd --create-home cakesite && mkdir -p /app/var/media /app/var/models \
    && chown -R cakesite /app/var
USER cakesite
EXPOSE 8000
CMD ["gunicorn", "cakesite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-class", "gthread", "--threads", "8", "--logger-class", "cakesite.accesslog.AccessLogger"]
