/*
 * A stand-in for Windows' bcryptprimitives.dll, for running Rust programs under Debian's
 * wine 8, which lacks that DLL: Rust's standard library (1.78 and later) asks its
 * ProcessPrng for random bytes when a program starts (HashMap keys), and the program
 * dies without it. RtlGenRandom (advapi32's SystemFunction036), which wine has, gives the
 * same kind of bytes. Built by `make check-windows` into the wine prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
