#!/bin/bash
# Cloudera Manager sources this when it activates the parcel: point CDH at the
# environment's Python and run the environment's activation scripts.
CONDA_PACK_PARCEL_PREFIX="${PARCELS_ROOT}/${PARCEL_DIRNAME}"

if [ -z "${CDH_PYTHON}" ]; then
    export CDH_PYTHON="${CONDA_PACK_PARCEL_PREFIX}/bin/python"
fi

for _conda_pack_f in "${CONDA_PACK_PARCEL_PREFIX}"/etc/conda/activate.d/*.sh; do
    if [ -f "$_conda_pack_f" ]; then . "$_conda_pack_f"; fi
done
unset _conda_pack_f CONDA_PACK_PARCEL_PREFIX
