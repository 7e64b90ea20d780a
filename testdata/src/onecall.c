/* One -pg function, so one call to _mcount: the singular of every count recordpatch
 * prints about calls (tests/test_shapes.py, with -mmicromips: one call refused). */
extern int ext(int);

int onecall(int x)
{
	return ext(x) + 1;
}
