/* sysload.c - the load average, read at most once a second (sysload.h). */
#include <stdlib.h>
#include <time.h>

#include "sysload.h"

double sysload_avg1(void)
{
    static time_t read_at;
    static double avg;
    time_t now = time(NULL);

    if (now != read_at) {
        read_at = now;
        if (getloadavg(&avg, 1) != 1)
            avg = 0.0;
    }
    return avg;
}
