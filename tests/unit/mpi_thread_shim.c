/* LD_PRELOAD shim for tests: an MPI library that offers at most
 * MPI_THREAD_SERIALIZED, through the MPI profiling interface (PMPI). */
#include <mpi.h>

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
{
    int rc = PMPI_Init_thread(argc, argv, required, provided);
    if (rc == MPI_SUCCESS && *provided > MPI_THREAD_SERIALIZED)
        *provided = MPI_THREAD_SERIALIZED;
    return rc;
}
